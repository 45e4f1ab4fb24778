"""Which AuthorizationPolicy / RequestAuthentication objects apply to a workload.

Objects in the root namespace apply to every namespace, others to their own; ``selector``
narrows to workloads whose labels match. ``targetRef(s)`` bind to gateways/waypoints, which
sidecars are not, so such objects do not apply here.
"""

from __future__ import annotations

from typing import TypeVar

from meshplane.pilot.model.config import Config, given, labels_match
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import AuthorizationPolicy, RequestAuthentication

#: A kind selected by ``selector`` or ``targetRef(s)``.
Policy = TypeVar("Policy", AuthorizationPolicy, RequestAuthentication)


def applies_to(cfg: Config[Policy], namespace: str, labels: dict[str, str], root_namespace: str) -> bool:
    if cfg.namespace not in (root_namespace, namespace):
        return False
    spec = cfg.spec
    if given(spec.target_ref) or spec.target_refs:
        return False
    selector = spec.selector.match_labels if spec.selector else None
    return labels_match(selector or {}, labels)


def applicable(
    ctx: PushContext, kind: type[Policy], namespace: str, labels: dict[str, str]
) -> list[Config[Policy]]:
    """The objects of ``kind`` that apply, root namespace first, in a stable order."""
    root = ctx.root_namespace
    found = [c for c in ctx.of_kind(kind) if applies_to(c, namespace, labels, root)]
    return sorted(found, key=lambda c: (c.namespace != root, c.namespace, c.name))
