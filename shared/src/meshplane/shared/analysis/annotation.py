"""Annotation analyzers: ``*.istio.io`` annotations Istio does not know (IST0108) or that sit on a
kind they have no effect on (IST0107)."""

from __future__ import annotations

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context

_POD = ("Pod",)
_WORKLOAD = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")

#: Known Istio annotations → the kinds they apply to (None = any kind).
KNOWN: dict[str, tuple[str, ...] | None] = {
    "galley.istio.io/analyze-suppress": None,
    "kubectl.kubernetes.io/default-container": None,
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
    domain = key.split("/", 1)[0]
    return "/" in key and (domain == "istio.io" or domain.endswith(".istio.io"))


def check(ctx: Context) -> None:
    for r in ctx:
        for key in sorted(r.str_map("annotations")):
            if not _is_istio(key):
                continue
            if key not in KNOWN:
                ctx.report(m.UNKNOWN_ANNOTATION, r, f"Unknown annotation: {key}")
                continue
            kinds = KNOWN[key]
            if kinds is not None and r.kind not in kinds:
                ctx.report(
                    m.MISPLACED_ANNOTATION,
                    r,
                    f"Misplaced annotation: {key} can only be applied to {', '.join(kinds)}",
                )
