"""Annotation analyzers over Namespaces, Services, Pods and Deployments (as istioctl): ``*.istio.io``
annotations Istio does not know (IST0108), that sit on a kind they have no effect on (IST0107), that
are deprecated (IST0135) or whose value is invalid (IST0125); and ``proxy.istio.io/config`` fields
meshplane accepts but does not apply (IST0133)."""

from __future__ import annotations

import ipaddress

import yaml

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource
from meshplane.shared.proxyconfig import ANNOTATION, ProxyConfigError, check_proxy_config, not_applied

_POD = ("Pod",)
_WORKLOAD = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")

#: Known Istio annotations → the kinds they apply to (None = any kind).
KNOWN: dict[str, tuple[str, ...] | None] = {
    "galley.istio.io/analyze-suppress": None,
    "kubectl.kubernetes.io/default-container": None,
    "kubernetes.io/ingress.class": ("Ingress",),
    "sidecar.istio.io/inject": _WORKLOAD,
    "sidecar.istio.io/status": _POD,
    "sidecar.istio.io/proxyCPU": _POD,
    "sidecar.istio.io/proxyCPULimit": _POD,
    "sidecar.istio.io/proxyMemory": _POD,
    "sidecar.istio.io/proxyMemoryLimit": _POD,
    "sidecar.istio.io/proxyImage": _POD,
    "sidecar.istio.io/logLevel": _POD,
    "sidecar.istio.io/componentLogLevel": _POD,
    "sidecar.istio.io/agentLogLevel": _POD,
    "sidecar.istio.io/interceptionMode": _POD,
    "sidecar.istio.io/rewriteAppHTTPProbers": _POD,
    "sidecar.istio.io/bootstrapOverride": _POD,
    "sidecar.istio.io/statsInclusionPrefixes": _POD,
    "sidecar.istio.io/statsInclusionSuffixes": _POD,
    "sidecar.istio.io/statsInclusionRegexps": _POD,
    "sidecar.istio.io/extraStatTags": _POD,
    "sidecar.istio.io/userVolume": _POD,
    "sidecar.istio.io/userVolumeMount": _POD,
    "sidecar.istio.io/enableCoreDump": _POD,
    "traffic.sidecar.istio.io/includeOutboundIPRanges": _POD,
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _POD,
    "traffic.sidecar.istio.io/includeInboundPorts": _POD,
    "traffic.sidecar.istio.io/excludeInboundPorts": _POD,
    "traffic.sidecar.istio.io/includeOutboundPorts": _POD,
    "traffic.sidecar.istio.io/excludeOutboundPorts": _POD,
    "traffic.sidecar.istio.io/kubevirtInterfaces": _POD,
    "status.sidecar.istio.io/port": _POD,
    "readiness.status.sidecar.istio.io/applicationPorts": _POD,
    "readiness.status.sidecar.istio.io/initialDelaySeconds": _POD,
    "readiness.status.sidecar.istio.io/periodSeconds": _POD,
    "readiness.status.sidecar.istio.io/failureThreshold": _POD,
    "proxy.istio.io/config": _POD,
    "prometheus.istio.io/merge-metrics": _POD,
    "inject.istio.io/templates": _POD,
    "ambient.istio.io/redirection": _POD,
    "networking.istio.io/exportTo": ("Service",),
    "networking.istio.io/traffic-distribution": ("Service",),
    "istio.io/dry-run": ("AuthorizationPolicy",),
    "istio.io/rev": ("Namespace", "Pod"),
}


def _is_istio(key: str) -> bool:
    """An ``*.istio.io`` annotation, or one of the few others in Istio's annotation table."""
    domain = key.split("/", 1)[0]
    return "/" in key and (domain == "istio.io" or domain.endswith(".istio.io") or key in KNOWN)


#: Set by Istio's own controllers or injector, never checked (istioctl's always-ignored annotations).
IGNORED = frozenset({"sidecar.istio.io/status", "gateway.istio.io/controller-version", "istio.io/rev"})

#: The kinds whose annotations istioctl's annotation analyzer reads.
ANALYZED_KINDS = ("Namespace", "Service", "Pod", "Deployment")

#: Deprecated annotations → the text after "has been deprecated".
DEPRECATED: dict[str, str] = {
    "sidecar.istio.io/inject": ' in favor of the "sidecar.istio.io/inject" label',
    "traffic.sidecar.istio.io/kubevirtInterfaces": "",
    "sidecar.istio.io/statsInclusionPrefixes": "",
    "sidecar.istio.io/statsInclusionSuffixes": "",
    "sidecar.istio.io/statsInclusionRegexps": "",
}
#: Annotations whose value must be a whole number.
_INTEGERS = (
    "readiness.status.sidecar.istio.io/initialDelaySeconds",
    "readiness.status.sidecar.istio.io/periodSeconds",
    "readiness.status.sidecar.istio.io/failureThreshold",
)

_PORT_LISTS = (
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundPorts",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
)
_CIDR_LISTS = (
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
)


def _port(text: str) -> str | None:
    if not text.strip().isdigit() or not 0 < int(text) <= 65535:
        return f"{text!r} is not a valid port number (1-65535)"
    return None


def _invalid(key: str, value: str) -> str | None:
    """Why ``value`` is not valid for ``key`` (None when valid or unchecked)."""
    if key == "sidecar.istio.io/interceptionMode" and value not in ("REDIRECT", "TPROXY", "NONE"):
        return f"{value!r} is not a valid interception mode (REDIRECT, TPROXY or NONE)"
    if key in _INTEGERS and not value.strip().lstrip("-").isdigit():
        return f"{value!r} is not a whole number"
    if key == "status.sidecar.istio.io/port" and value != "0":
        return _port(value)
    if key in _PORT_LISTS and value.strip() not in ("", "*"):
        return next((e for e in map(_port, value.split(",")) if e), None)
    if key == ANNOTATION:
        return _proxy_config(value)
    if key in _CIDR_LISTS and value.strip() not in ("", "*"):
        for cidr in value.split(","):
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                return f"{cidr.strip()!r} is not a valid CIDR range"
    return None


def _proxy_config(value: str) -> str | None:
    try:
        check_proxy_config(yaml.safe_load(value), "ProxyConfig")
    except yaml.YAMLError as exc:
        return f"not valid YAML: {str(exc).splitlines()[0]}"
    except ProxyConfigError as exc:
        return str(exc).removeprefix("ProxyConfig: ")
    return None


def _proxy_config_not_applied(ctx: Context, r: Resource, value: str) -> None:
    doc = yaml.safe_load(value)
    for name in not_applied(doc) if isinstance(doc, dict) else []:
        ctx.report(m.SCHEMA_WARNING, r, f"accepted, not applied by meshplane: {ANNOTATION} {name}")


def check(ctx: Context) -> None:
    """IST0108 unknown, IST0135 deprecated, IST0107 misplaced and IST0125 invalid annotations."""
    for r in ctx:
        if r.kind not in ANALYZED_KINDS:
            continue
        annotations = r.str_map("annotations")
        for key in sorted(annotations):
            if not _is_istio(key) or key in IGNORED:
                continue
            if key not in KNOWN:
                ctx.report(m.UNKNOWN_ANNOTATION, r, f"Unknown annotation: {key}")
                continue
            if key in DEPRECATED and not (key == "sidecar.istio.io/inject" and key in r.str_map("labels")):
                ctx.report(
                    m.DEPRECATED_ANNOTATION,
                    r,
                    f'Annotation "{key}" has been deprecated{DEPRECATED[key]} and may not work in future '
                    "Istio versions.",
                )
            kinds = KNOWN[key]
            if kinds is not None and r.kind not in kinds:
                ctx.report(
                    m.MISPLACED_ANNOTATION,
                    r,
                    f"Misplaced annotation: {key} can only be applied to {', '.join(kinds)}",
                )
                continue
            problem = _invalid(key, annotations[key])
            if problem:
                ctx.report(m.INVALID_ANNOTATION, r, f"Invalid annotation {key}: {problem}")
            elif key == ANNOTATION:
                _proxy_config_not_applied(ctx, r, annotations[key])
