"""Which AuthorizationPolicy / RequestAuthentication objects apply to a workload.

Objects in the root namespace apply to every namespace, others to their own; ``selector``
narrows to workloads whose labels match. ``targetRef(s)`` bind to gateways/waypoints, which
sidecars are not, so such objects do not apply here.
"""

from __future__ import annotations

from meshplane.pilot.model.config import Config, labels_match
from meshplane.pilot.model.push_context import PushContext


def applies_to(cfg: Config, namespace: str, labels: dict[str, str], root_namespace: str) -> bool:
    if cfg.namespace not in (root_namespace, namespace):
        return False
    if cfg.spec.get("targetRef") or cfg.spec.get("targetRefs"):
        return False
    selector = (cfg.spec.get("selector") or {}).get("matchLabels") or {}
    return labels_match({str(k): str(v) for k, v in selector.items()}, labels)


def applicable(ctx: PushContext, kind: str, namespace: str, labels: dict[str, str]) -> list[Config]:
    """The objects of ``kind`` that apply, root namespace first, in a stable order."""
    root = ctx.root_namespace
    found = [c for c in ctx.of_kind(kind) if applies_to(c, namespace, labels, root)]
    return sorted(found, key=lambda c: (c.namespace != root, c.namespace, c.name))
