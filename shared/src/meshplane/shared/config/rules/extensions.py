"""Istio's WasmPlugin and ProxyConfig rules."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.extensions import ProxyConfig, WasmPlugin
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.selectors import check_selector, check_targets
from meshplane.shared.proxyconfig import IMAGE_TYPES

_SHA256 = re.compile(r"^[a-f0-9]{64}$")
_URL_SCHEMES = frozenset({"", "file", "http", "https", "oci"})


def check_wasm(wp: WasmPlugin, ctx: ObjectContext, issues: Issues) -> None:
    check_targets(wp.selector, wp.target_ref, wp.target_refs, issues)
    issues.warn(
        "spec",
        f"{NOT_APPLIED}: WasmPlugin (upstream Envoy is served no Wasm modules: meshplane has no "
        "equivalent of istio-agent's Wasm fetch and ECDS path)",
    )
    if not wp.url:
        issues.error("spec.url", "url field needs to be set")
    else:
        scheme = urlparse(wp.url).scheme if "://" in wp.url else ""
        if scheme not in _URL_SCHEMES:
            issues.error("spec.url", f"url contains unsupported scheme: {scheme}")
    if wp.sha256 and not _SHA256.match(wp.sha256):
        issues.error("spec.sha256", "sha256 field must match [a-f0-9]{64} pattern")
    if wp.image_pull_secret and len(wp.image_pull_secret) > 253:
        issues.error("spec.imagePullSecret", "imagePullSecret field must be less than 253 characters long")
    if wp.plugin_name and len(wp.plugin_name) > 256:
        issues.error("spec.pluginName", "pluginName field must be less than 255 characters long")
    for i, selector in enumerate(wp.match or []):
        for j, port in enumerate(selector.get("ports") or []):
            number = port.get("number") if isinstance(port, dict) else None
            if not isinstance(number, int) or not 0 < number <= 65535:
                issues.error(f"spec.match[{i}].ports[{j}]", f"port is out of range: {number}")


def check_proxy_config(pc: ProxyConfig, ctx: ObjectContext, issues: Issues) -> None:
    check_selector(pc.selector, "spec.selector", issues)
    if pc.concurrency is not None and pc.concurrency < 0:
        issues.error("spec.concurrency", "concurrency must be greater than or equal to 0")
    kind = pc.image.image_type if pc.image else None
    if kind and kind not in IMAGE_TYPES:
        issues.warn(
            "spec.image.imageType",
            f"unknown image type {kind!r} (have {', '.join(IMAGE_TYPES)}): "
            "injected pods get the default image",
        )
