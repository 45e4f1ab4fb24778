"""Gateway-API CRDs installed at a bundle version below the minimum this control plane reads
(IST0176): resources of such a kind are not processed at all."""

from __future__ import annotations

import re

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context

BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"
#: CRD name -> minimum bundle version (Istio's table).
MINIMUM_VERSIONS: dict[str, tuple[int, int, int]] = {
    "grpcroutes.gateway.networking.k8s.io": (1, 1, 0),
    "backendtlspolicies.gateway.networking.k8s.io": (1, 4, 0),
    "tlsroutes.gateway.networking.k8s.io": (1, 5, 0),
    "tcproutes.gateway.networking.k8s.io": (1, 6, 0),
}
_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")


def _text(version: tuple[int, int, int], pre: str = "", build: str = "") -> str:
    out = ".".join(map(str, version))
    return out + (f"-{pre}" if pre else "") + (f"+{build}" if build else "")


def check_crd_versions(ctx: Context) -> None:
    """IST0176 for each known Gateway-API CRD whose bundle-version annotation (its pre-release part
    ignored) is below the minimum; an absent or unparsable annotation says nothing."""
    for crd in ctx.kind("CustomResourceDefinition"):
        minimum = MINIMUM_VERSIONS.get(crd.name)
        match = _SEMVER.match(crd.str_map("annotations").get(BUNDLE_VERSION, ""))
        if minimum is None or match is None:
            continue
        installed = (int(match[1]), int(match[2] or 0), int(match[3] or 0))
        if installed < minimum:
            shown = _text(installed, match[4] or "", match[5] or "")
            ctx.report(
                m.GATEWAY_API_CRD_VERSION_BELOW_MINIMUM,
                crd,
                f'Gateway API CRD "{crd.name}" is at version "{shown}" but Istio requires at least '
                f'"{_text(minimum)}"; resources of this kind will not be processed. '
                "Upgrade the Gateway API CRDs to satisfy the minimum version.",
            )
