"""Workload-selector analyzers: Sidecars (IST0101, IST0110, IST0111), Telemetries (IST0101,
IST0159, IST0160, IST0157), AuthorizationPolicies (IST0127, IST0101 for source namespaces) and
policy selectors that match Gateway-API gateway pods (IST0166)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import (
    Context,
    Resource,
    go_list,
    mappings,
    selector_text,
    str_dict,
    strs,
)
from meshplane.shared.analysis.injection import PROXY, _injected_namespace


def _labels(r: Resource, field: str, inner: str) -> dict[str, str] | None:
    """The selector labels at ``spec.<field>.<inner>``, or None when the resource has no selector."""
    holder = r.spec.get(field)
    if not isinstance(holder, Mapping):
        return None
    return str_dict(holder.get(inner))


def _check_selected(
    ctx: Context,
    kind: str,
    field: str,
    inner: str,
    conflict: m.MessageType,
    unselected: m.MessageType,
    plural: str,
    parts: tuple[bool, bool] = (True, True),
) -> None:
    """``parts``: (report selectors and their conflicts, report several selector-less resources)."""
    by_pod: dict[tuple[str, str], list[Resource]] = {}
    without: dict[str, list[Resource]] = {}
    for r in ctx.kind(kind):
        labels = _labels(r, field, inner)
        if not labels:
            without.setdefault(r.namespace, []).append(r)
            continue
        pods = ctx.workloads(labels, r.namespace)
        if not pods and parts[0]:
            ctx.report(
                m.REFERENCED_RESOURCE_NOT_FOUND,
                r,
                f'Referenced selector not found: "{selector_text(labels)}"',
            )
        for pod in pods:
            by_pod.setdefault((pod.namespace, pod.name), []).append(r)
    groups = [
        (owners, conflict, f'in namespace "{ns}" select the same workload pod "{pod_name}"')
        for (ns, pod_name), owners in sorted(by_pod.items())
        if parts[0]
    ] + [
        (owners, unselected, f'in namespace "{ns}" have no workload selector')
        for ns, owners in sorted(without.items())
        if parts[1]
    ]
    for owners, mtype, what in groups:
        if len(owners) > 1:
            names = go_list(o.name for o in owners)
            for r in owners:
                ctx.report(mtype, r, f"The {plural} {names} {what}, which can lead to undefined behavior.")


def check_sidecars(ctx: Context) -> None:
    _check_selected(
        ctx,
        "Sidecar",
        "workloadSelector",
        "labels",
        m.CONFLICTING_SIDECAR_SELECTORS,
        m.MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
        "Sidecars",
    )


def check_telemetries(ctx: Context, parts: tuple[bool, bool] = (True, False)) -> None:
    """IST0101 and IST0159 (istioctl's telemetry.SelectorAnalyzer)."""
    _check_selected(
        ctx,
        "Telemetry",
        "selector",
        "matchLabels",
        m.CONFLICTING_TELEMETRY_SELECTORS,
        m.MULTIPLE_TELEMETRIES_WITHOUT_SELECTOR,
        "Telemetries",
        parts,
    )


def check_telemetry_defaults(ctx: Context) -> None:
    """IST0160 (istioctl's telemetry.DefaultSelectorAnalyzer)."""
    check_telemetries(ctx, (False, True))


#: The MeshConfig provider type meshplane writes for each Telemetry section (others: not applied)
_APPLIED_PROVIDER_TYPES = {
    "accessLogging": ("envoyFileAccessLog", "envoyOtelAls"),
    "tracing": ("opentelemetry",),
}


def check_unapplied_providers(ctx: Context) -> None:
    """IST0157 (meshplane): a Telemetry naming a MeshConfig provider of a type meshplane does not
    write for that section, e.g. a zipkin tracer or an envoyHttpAls logger."""
    types = {"envoy": "envoyFileAccessLog"}
    for p in mappings(ctx.mesh_config.get("extensionProviders")):
        kinds = [str(k) for k in p if k != "name"]
        types[str(p.get("name"))] = kinds[0] if len(kinds) == 1 else ""
    for r in ctx.kind("Telemetry"):
        for section, applied in _APPLIED_PROVIDER_TYPES.items():
            for i, entry in enumerate(mappings(r.spec.get(section))):
                for provider in mappings(entry.get("providers")):
                    name = str(provider.get("name", ""))
                    kind = types.get(name)
                    if kind is None or kind in applied:
                        continue  # unknown names are Istio's business (ignored there too)
                    ctx.report(
                        m.INVALID_TELEMETRY_PROVIDER,
                        r,
                        f'The Telemetry {r.name} in namespace "{r.namespace}": accepted, not applied by '
                        f"meshplane: {section}[{i}].providers[{name}] (a {kind} provider; meshplane "
                        f"writes {' and '.join(applied)} providers here)",
                    )


def check_telemetry_providers(ctx: Context) -> None:
    """IST0157: an enabled access-logging entry with no providers while MeshConfig names no default
    (and providers meshplane does not apply, :func:`check_unapplied_providers`)."""
    check_unapplied_providers(ctx)
    defaults = ctx.mesh_config.get("defaultProviders")
    if isinstance(defaults, Mapping) and defaults.get("accessLogging"):
        return
    for r in ctx.kind("Telemetry"):
        for entry in mappings(r.spec.get("accessLogging")):
            if not entry.get("providers") and entry.get("disabled") is not True:
                ctx.report(
                    m.INVALID_TELEMETRY_PROVIDER,
                    r,
                    f'The Telemetry {r.name} in namespace "{r.namespace}" '
                    "with empty providers will be ignored.",
                )
                break


def check_lightstep(ctx: Context) -> None:
    """IST0002: a Telemetry traces to a MeshConfig extension provider of the deprecated Lightstep type."""
    names = {
        str(p.get("name"))
        for p in mappings(ctx.mesh_config.get("extensionProviders"))
        if isinstance(p.get("lightstep"), Mapping)
    }
    for r in ctx.kind("Telemetry"):
        for tracing in mappings(r.spec.get("tracing")):
            for provider in mappings(tracing.get("providers")):
                if str(provider.get("name")) in names:
                    ctx.report(
                        m.DEPRECATED,
                        r,
                        f"Deprecated: The Lightstep provider {provider.get('name')} is deprecated, please "
                        "migrate to OpenTelemetry provider.",
                    )


def _in_mesh(ctx: Context, pod: Resource) -> bool:
    if pod.kind == "WorkloadEntry":
        return True
    containers = mappings(pod.spec.get("containers")) + mappings(pod.spec.get("initContainers"))
    return any(c.get("name") == PROXY for c in containers) or _injected_namespace(ctx, pod.namespace)


def check_authorization(ctx: Context) -> None:
    """IST0127: a policy that selects no in-mesh pod; IST0101: a source namespace that does not exist."""
    namespaces = [ns.name for ns in ctx.kind("Namespace")]
    for ap in ctx.kind("AuthorizationPolicy"):
        labels = _labels(ap, "selector", "matchLabels") or {}
        scope = None if ap.namespace == ctx.root_namespace else ap.namespace
        if labels or scope is not None:
            pods = [p for p in ctx.workloads(labels, scope) if _in_mesh(ctx, p)]
            if not pods:
                ctx.report(
                    m.NO_MATCHING_WORKLOADS,
                    ap,
                    "No matching workloads for this resource with the following labels: "
                    + selector_text(labels),
                )
        for rule in mappings(ap.spec.get("rules")):
            for src in mappings(rule.get("from")):
                source = src.get("source")
                if not isinstance(source, Mapping):
                    continue
                for key in ("namespaces", "notNamespaces"):
                    for ns in strs(source.get(key)):
                        if not any(fnmatch.fnmatchcase(n, str(ns)) for n in namespaces):
                            ctx.report(
                                m.REFERENCED_RESOURCE_NOT_FOUND, ap, f'Referenced namespace not found: "{ns}"'
                            )


GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
POLICY_KINDS = ("AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin")


def check_gateway_api_selectors(ctx: Context) -> None:
    """IST0166: a policy ``selector`` that matches Gateway-API gateway pods (it should use targetRefs)."""
    for kind in POLICY_KINDS:
        for r in ctx.kind(kind):
            labels = _labels(r, "selector", "matchLabels")
            if not labels or r.spec.get("targetRef") or r.spec.get("targetRefs"):
                continue
            pod_labels = [p.str_map("labels") for p in ctx.pods(labels, r.namespace)]
            gateways = sorted({pl[GATEWAY_NAME_LABEL] for pl in pod_labels if GATEWAY_NAME_LABEL in pl})
            for gw in gateways:
                ctx.report(
                    m.INEFFECTIVE_SELECTOR,
                    r,
                    f"Ineffective selector on Kubernetes Gateway {gw}. Use the TargetRef field instead.",
                )


AMBIENT_LABEL = "istio.io/dataplane-mode"


def _ambient_pod(ctx: Context, pod: Resource) -> bool:
    mode = pod.str_map("labels").get(AMBIENT_LABEL) or ctx.namespace_labels(pod.namespace).get(AMBIENT_LABEL)
    containers = mappings(pod.spec.get("containers")) + mappings(pod.spec.get("initContainers"))
    return mode == "ambient" and not any(c.get("name") == PROXY for c in containers)


def check_ambient_sidecars(ctx: Context) -> None:
    """IST0167: a Sidecar for an ambient namespace, or selecting only ambient workloads."""
    for sc in ctx.kind("Sidecar"):
        labels = _labels(sc, "workloadSelector", "labels")
        if not labels:
            if ctx.namespace_labels(sc.namespace).get(AMBIENT_LABEL) == "ambient":
                reason = "namespace is in ambient mode"
                ctx.report(
                    m.INEFFECTIVE_POLICY, sc, f"The policy has no impact: {reason}, the policy has no impact."
                )
            continue
        pods = ctx.pods(labels, sc.namespace)
        if pods and all(_ambient_pod(ctx, p) for p in pods):
            reason = "selected workload is in ambient mode"
            ctx.report(
                m.INEFFECTIVE_POLICY, sc, f"The policy has no impact: {reason}, the policy has no impact."
            )
