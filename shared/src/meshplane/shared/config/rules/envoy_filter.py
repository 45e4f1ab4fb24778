"""Istio's EnvoyFilter rules: patch shape, applyTo vs match kind, filter names, proxy version."""

from __future__ import annotations

from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.regex import check_regex
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.envoy_filter import ApplyTo, EnvoyFilter, Operation
from meshplane.shared.config.rules.context import ObjectContext

HCM = "envoy.filters.network.http_connection_manager"
_LISTENER_KINDS = {ApplyTo.LISTENER, ApplyTo.FILTER_CHAIN, ApplyTo.NETWORK_FILTER, ApplyTo.HTTP_FILTER}
_ROUTE_KINDS = {ApplyTo.ROUTE_CONFIGURATION, ApplyTo.VIRTUAL_HOST, ApplyTo.HTTP_ROUTE}
_DEPRECATED_NAMES = {
    "envoy.http_connection_manager": HCM,
    "envoy.router": "envoy.filters.http.router",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.lua": "envoy.filters.http.lua",
}


def check(ef: EnvoyFilter, ctx: ObjectContext, issues: Issues) -> None:
    issues.warn("spec", "EnvoyFilter exposes internal implementation details that may change at any time")
    if ef.workload_selector is not None:
        labels = ef.workload_selector.labels or {}
        if not labels:
            issues.warn("spec.workloadSelector.labels", "empty workloadSelector labels select every workload")
        for key, problem in label_problems(labels):
            issues.error(f"spec.workloadSelector.labels.{key}", problem)
    for i, cp in enumerate(ef.config_patches or []):
        path = f"spec.configPatches[{i}]"
        if cp.apply_to is None or cp.apply_to == ApplyTo.INVALID:
            issues.error(f"{path}.applyTo", "applyTo is required")
        if cp.patch is None:
            issues.error(f"{path}.patch", "patch is required")
        else:
            op = cp.patch.operation
            if op is None or op == Operation.INVALID:
                issues.error(f"{path}.patch.operation", "patch operation is required")
            elif op != Operation.REMOVE and not cp.patch.value:
                issues.error(f"{path}.patch.value", f"patch operation {op} requires a value")
            _warn_deprecated(cp.patch.value, f"{path}.patch.value", issues)
        match = cp.match
        if match is None:
            continue
        version = match.proxy.proxy_version if match.proxy is not None else None
        if version is not None and (bad := check_regex(version)):
            issues.error(f"{path}.match.proxy.proxyVersion", bad)
        if cp.apply_to in _LISTENER_KINDS and (match.route_configuration or match.cluster):
            issues.error(f"{path}.match", f"applyTo {cp.apply_to} requires a listener match")
        if cp.apply_to in _ROUTE_KINDS and (match.listener or match.cluster):
            issues.error(f"{path}.match", f"applyTo {cp.apply_to} requires a routeConfiguration match")
        if cp.apply_to == ApplyTo.CLUSTER and (match.listener or match.route_configuration):
            issues.error(f"{path}.match", "applyTo CLUSTER requires a cluster match")
        chain = match.listener.filter_chain if match.listener else None
        flt = chain.filter if chain else None
        if flt is not None:
            fpath = f"{path}.match.listener.filterChain.filter"
            if not flt.name:
                issues.error(f"{fpath}.name", "filter match requires a name")
            elif flt.name in _DEPRECATED_NAMES:
                issues.warn(
                    f"{fpath}.name", f"{flt.name!r} is deprecated; use {_DEPRECATED_NAMES[flt.name]!r}"
                )
            if flt.sub_filter is not None:
                if cp.apply_to != ApplyTo.HTTP_FILTER:
                    issues.error(f"{fpath}.subFilter", "subFilter is only allowed with applyTo HTTP_FILTER")
                if flt.name not in (HCM, "envoy.http_connection_manager"):
                    issues.error(f"{fpath}.subFilter", f"subFilter requires the filter name {HCM!r}")


def _warn_deprecated(value: object, path: str, issues: Issues) -> None:
    if not isinstance(value, dict):
        return
    name = value.get("name")
    if isinstance(name, str) and name in _DEPRECATED_NAMES:
        issues.warn(f"{path}.name", f"{name!r} is deprecated; use {_DEPRECATED_NAMES[name]!r}")
    typed = value.get("typed_config") or value.get("typedConfig")
    if isinstance(typed, dict):
        type_url = typed.get("@type")
        if not isinstance(type_url, str) or not type_url.startswith("type.googleapis.com/"):
            issues.error(f"{path}.typed_config.@type", f"unknown or missing type URL {type_url!r}")
