"""Istio's EnvoyFilter rules: patch shape, applyTo vs match kind, filter names, Envoy value types."""

from __future__ import annotations

from meshplane.shared.config.checks.envoy_types import conversion_problems
from meshplane.shared.config.checks.regex import check_regex
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.envoy_filter import (
    ApplyTo,
    EnvoyConfigObjectMatch,
    EnvoyConfigObjectPatch,
    EnvoyFilter,
    FilterClass,
    Operation,
    PatchContext,
)
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.selectors import check_selector_labels

HCM = "envoy.filters.network.http_connection_manager"
_LISTENER_KINDS = {ApplyTo.LISTENER, ApplyTo.FILTER_CHAIN, ApplyTo.NETWORK_FILTER, ApplyTo.HTTP_FILTER}
_ROUTE_KINDS = {ApplyTo.ROUTE_CONFIGURATION, ApplyTo.VIRTUAL_HOST, ApplyTo.HTTP_ROUTE}
#: Old filter names Envoy still maps to their new names, with a deprecation warning.
DEPRECATED_NAMES = {
    "envoy.http_connection_manager": HCM,
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
    "envoy.router": "envoy.filters.http.router",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.lua": "envoy.filters.http.lua",
    "envoy.ext_authz": "envoy.filters.http.ext_authz",
    "envoy.grpc_web": "envoy.filters.http.grpc_web",
    "envoy.health_check": "envoy.filters.http.health_check",
    "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
}


_ALL_OPS = frozenset(Operation) - {Operation.INVALID}
_WHOLE = frozenset({Operation.MERGE, Operation.ADD, Operation.REMOVE})
_INSERTS = frozenset({Operation.INSERT_BEFORE, Operation.INSERT_AFTER, Operation.INSERT_FIRST})
#: What meshplane's Pilot applies, by applyTo (what Istio's patch code applies); every other patch
#: gets a "not applied" warning.
APPLIED: dict[ApplyTo, frozenset[Operation]] = {
    ApplyTo.LISTENER: _WHOLE,
    ApplyTo.LISTENER_FILTER: _ALL_OPS,
    ApplyTo.FILTER_CHAIN: _WHOLE,
    ApplyTo.NETWORK_FILTER: _ALL_OPS,
    ApplyTo.HTTP_FILTER: _ALL_OPS,
    ApplyTo.ROUTE_CONFIGURATION: frozenset({Operation.MERGE}),
    ApplyTo.VIRTUAL_HOST: _WHOLE | {Operation.REPLACE},
    ApplyTo.HTTP_ROUTE: _WHOLE | _INSERTS,
    ApplyTo.CLUSTER: _WHOLE,
}
#: Why an applyTo is not applied at all.
_WHY_NOT = {
    ApplyTo.EXTENSION_CONFIG: "meshplane serves no ECDS, so no proxy asks for extension configs",
    ApplyTo.BOOTSTRAP: "deprecated; Istio does not apply it either",
}
#: applyTo values whose relative operations Istio turns into ADD.
_RELATIVE_OK = {ApplyTo.HTTP_FILTER, ApplyTo.NETWORK_FILTER, ApplyTo.HTTP_ROUTE, ApplyTo.LISTENER_FILTER}
_RELATIVE = {Operation.INSERT_BEFORE, Operation.INSERT_AFTER, Operation.INSERT_FIRST}
NOT_APPLIED = "accepted, not applied by meshplane"


def effective_operation(apply_to: ApplyTo, op: Operation) -> Operation:
    """The operation Istio runs: relative ones become ADD outside filter/route lists."""
    return Operation.ADD if op in _RELATIVE and apply_to not in _RELATIVE_OK else op


def check(ef: EnvoyFilter, ctx: ObjectContext, issues: Issues) -> None:
    issues.warn(
        "spec",
        "EnvoyFilter exposes internal implementation details that may change at any time; "
        "prefer other APIs if possible, and take care around upgrades",
    )
    if ef.workload_selector is not None:
        check_selector_labels(ef.workload_selector.labels, "spec.workloadSelector.labels", issues)
    if ef.target_refs:
        issues.warn("spec.targetRefs", f"{NOT_APPLIED}: targetRefs (no Gateway API gateways or waypoints)")
    for i, cp in enumerate(ef.config_patches or []):
        _check_patch(cp, f"spec.configPatches[{i}]", issues)
        _warn_not_applied(cp, f"spec.configPatches[{i}]", issues)


def _warn_not_applied(cp: EnvoyConfigObjectPatch, path: str, issues: Issues) -> None:
    if cp.patch is not None and cp.patch.filter_class not in (None, FilterClass.UNSPECIFIED):
        issues.warn(f"{path}.patch.filterClass", f"{NOT_APPLIED}: patch.filterClass")
    if cp.apply_to is None or cp.patch is None or cp.patch.operation is None:
        return
    op = effective_operation(cp.apply_to, cp.patch.operation)
    if cp.apply_to in _WHY_NOT:
        issues.warn(f"{path}.applyTo", f"{NOT_APPLIED}: applyTo {cp.apply_to} ({_WHY_NOT[cp.apply_to]})")
    elif op not in APPLIED.get(cp.apply_to, frozenset()):
        issues.warn(
            f"{path}.applyTo",
            f"{NOT_APPLIED}: applyTo {cp.apply_to} with operation {op} (Istio ignores it too)",
        )
    match = cp.match
    if match is not None and match.context == PatchContext.WAYPOINT:
        issues.warn(f"{path}.match.context", f"{NOT_APPLIED}: context WAYPOINT (meshplane has no waypoints)")
    if match is not None and match.listener is not None and match.listener.port_name:
        issues.warn(
            f"{path}.match.listener.portName",
            f"{NOT_APPLIED}: match.listener.portName (Istio does not implement it either)",
        )


def _check_patch(cp: EnvoyConfigObjectPatch, path: str, issues: Issues) -> None:
    if cp.apply_to is None or cp.apply_to == ApplyTo.INVALID:
        issues.error(f"{path}.applyTo", "Envoy filter: missing applyTo")
        return
    if cp.patch is None:
        issues.error(f"{path}.patch", "Envoy filter: missing patch")
        return
    op = cp.patch.operation
    if op is None or op == Operation.INVALID:
        issues.error(f"{path}.patch.operation", "Envoy filter: missing patch operation")
        return
    if op != Operation.REMOVE and cp.patch.value is None:
        issues.error(f"{path}.patch.value", "Envoy filter: missing patch value for non-remove operation")
        return
    match = cp.match
    if match is not None and not _check_match(cp.apply_to, match, f"{path}.match", issues):
        return
    if cp.patch.value is not None:
        error, warning = conversion_problems(cp.apply_to.value, cp.patch.value)
        if error:
            issues.error(f"{path}.patch.value", error)
        if warning:
            issues.warn(f"{path}.patch.value", warning)


def _check_match(apply_to: ApplyTo, match: EnvoyConfigObjectMatch, path: str, issues: Issues) -> bool:
    """False when the patch should not be checked further (as Istio stops at these errors)."""
    waypoint_context = match.context == PatchContext.WAYPOINT
    if match.waypoint is not None and not waypoint_context:
        issues.error(f"{path}.waypoint", "only support waypointMatch when context is WAYPOINT")
        return False
    if waypoint_context and match.listener is not None:
        issues.error(f"{path}.listener", "only support waypointMatch when context is WAYPOINT")
        return False
    port = match.waypoint.port_number if match.waypoint is not None else None
    if port is not None and not 1 <= port <= 65535:
        issues.error(f"{path}.waypoint.portNumber", "port must be between 1-65535")
        return False
    version = match.proxy.proxy_version if match.proxy is not None else None
    if version and (problem := check_regex(version)):
        issues.error(
            f"{path}.proxy.proxyVersion", f"Envoy filter: invalid regex for proxy version: {problem}"
        )
        return False
    has_object = (
        match.listener is not None or match.route_configuration is not None or match.cluster is not None
    )
    if not has_object:
        return True
    if apply_to in _LISTENER_KINDS:
        if match.listener is None:
            issues.error(
                path, "Envoy filter: applyTo for listener class objects cannot have non listener match"
            )
            return False
        return _check_filter_match(apply_to, match, f"{path}.listener.filterChain.filter", issues)
    if apply_to in _ROUTE_KINDS and match.route_configuration is None:
        issues.error(
            path,
            "Envoy filter: applyTo for http route class objects cannot have non route configuration match",
        )
    if apply_to == ApplyTo.CLUSTER and match.cluster is None:
        issues.error(path, "Envoy filter: applyTo for cluster class objects cannot have non cluster match")
    return True


def _check_filter_match(apply_to: ApplyTo, match: EnvoyConfigObjectMatch, path: str, issues: Issues) -> bool:
    chain = match.listener.filter_chain if match.listener is not None else None
    flt = chain.filter if chain is not None else None
    if flt is None:
        return True
    if apply_to in (ApplyTo.LISTENER, ApplyTo.FILTER_CHAIN):
        issues.warn(path, f"Envoy filter: filter match has no effect when used with {apply_to}")
    if not flt.name:
        issues.error(f"{path}.name", "Envoy filter: filter match has no name to match on")
        return False
    if flt.sub_filter is not None:
        if apply_to != ApplyTo.HTTP_FILTER:
            issues.error(
                f"{path}.subFilter", "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only"
            )
            return False
        if flt.name not in (HCM, "envoy.http_connection_manager"):
            issues.error(
                f"{path}.subFilter", f"Envoy filter: subfilter match requires filter match with {HCM}"
            )
            return False
        if not flt.sub_filter.name:
            issues.error(f"{path}.subFilter.name", "Envoy filter: subfilter match has no name to match on")
            return False
    for name, where in (
        (flt.name, f"{path}.name"),
        (flt.sub_filter.name if flt.sub_filter else None, f"{path}.subFilter.name"),
    ):
        if name in DEPRECATED_NAMES:
            issues.warn(
                where, f"using deprecated filter name {name!r}; use {DEPRECATED_NAMES[name]!r} instead"
            )
    return True
