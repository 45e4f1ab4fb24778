"""Negative status conditions (IST0171), as istioctl's ConditionAnalyzer reads them: the waypoint
binding of Services, ServiceEntries and WorkloadEntries, ztunnel/waypoint acceptance of
AuthorizationPolicies, and Gateway-API Gateways and routes that are not accepted, programmed or
resolved. Conditions of any other type (another controller's) are ignored."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, mappings

_GATEWAY_API = "gateway.networking.k8s.io"
_WAYPOINT = {"istio.io/WaypointBound"}
_GATEWAY = {"Accepted", "Programmed", "ResolvedRefs"}
#: (group, kind) -> condition types reported when their status is "False".
NEGATIVE: dict[tuple[str, str], set[str]] = {
    ("", "Service"): _WAYPOINT,
    ("networking.istio.io", "ServiceEntry"): _WAYPOINT,
    ("networking.istio.io", "WorkloadEntry"): _WAYPOINT,
    ("security.istio.io", "AuthorizationPolicy"): {"ZtunnelAccepted", "WaypointAccepted"},
    (_GATEWAY_API, "Gateway"): _GATEWAY,
    (_GATEWAY_API, "HTTPRoute"): _GATEWAY,
    (_GATEWAY_API, "GRPCRoute"): _GATEWAY,
}


def _conditions(r: Resource) -> Iterator[Mapping[str, Any]]:
    status = r.obj.get("status")
    if not isinstance(status, Mapping):
        return
    if r.kind in ("HTTPRoute", "GRPCRoute"):
        for parent in mappings(status.get("parents")):
            yield from mappings(parent.get("conditions"))
    else:
        yield from mappings(status.get("conditions"))


def check(ctx: Context) -> None:
    """IST0171 for each negative condition (and a partially invalid waypoint-accepted policy)."""
    for (group, kind), types in NEGATIVE.items():
        for r in ctx.kind(kind):
            if r.group != group:
                continue
            for cond in _conditions(r):
                ctype, status, reason = str(cond.get("type")), str(cond.get("status")), cond.get("reason")
                negative = ctype in types and status == "False"
                partial = (
                    kind == "AuthorizationPolicy"
                    and ctype == "WaypointAccepted"
                    and reason == "PartiallyInvalid"
                )
                for _ in range(negative + partial):
                    ctx.report(
                        m.NEGATIVE_CONDITION_STATUS,
                        r,
                        f"A condition with a negative status is present: type={ctype}, "
                        f"reason={reason or ''}, message={cond.get('message') or ''}.",
                    )
