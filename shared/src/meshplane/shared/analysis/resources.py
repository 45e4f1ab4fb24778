"""Analyzers over single resources: schema errors (IST0106), uninjected namespaces (IST0102) and
Service port names outside Istio's naming convention (IST0118)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, mappings
from meshplane.shared.analysis.injection import SYSTEM_NAMESPACES
from meshplane.shared.config import ISTIO_GROUPS, validate_object
from meshplane.shared.meshconfig import MeshConfigError, parse_mesh_config

_SHADOWING = re.compile(r"rule #\d+ (not used|is unreachable)|match #\d+ is not used")
EXTERNAL_NAME_TEXT = (
    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic "
    "for ports serving TCP protocol from being forwarded correctly"
)
_PROTOCOLS = ("http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "redis", "mysql", "udp")


def check_schema(ctx: Context) -> None:
    """IST0106: what the webhook would reject; IST0133: what it would warn about."""
    for r in ctx:
        if r.group not in ISTIO_GROUPS:
            continue
        result = validate_object(dict(r.obj))
        if result.kind is None:
            ctx.report(
                m.SCHEMA_VALIDATION_ERROR, r, f"Schema validation error: unrecognized type {r.group}/{r.kind}"
            )
        for issue in result.errors:
            ctx.report(m.SCHEMA_VALIDATION_ERROR, r, f"Schema validation error: {issue}")
        for issue in result.warnings:
            if r.kind == "VirtualService" and _SHADOWING.search(issue.message):
                continue  # reported as IST0130 / IST0131 by the rule analyzer, as istioctl does
            ctx.report(m.SCHEMA_WARNING, r, f"Schema validation warning: {issue}")
    check_mesh_config(ctx)


def check_mesh_config(ctx: Context) -> None:
    """The MeshConfig as meshplane reads it: IST0133 per field accepted but not applied, IST0106
    when Pilot would refuse it (reported on ``MeshConfig <root namespace>/istio``)."""
    holder = Resource("", "MeshConfig", ctx.root_namespace, "istio", dict(ctx.mesh_config))
    try:
        mesh = parse_mesh_config(yaml.safe_dump(dict(ctx.mesh_config)), "MeshConfig")
    except MeshConfigError as exc:
        ctx.report(m.SCHEMA_VALIDATION_ERROR, holder, f"Schema validation error: {exc}")
        return
    for field in mesh.not_applied:
        text = f"Schema validation warning: accepted, not applied by meshplane: {field}"
        ctx.report(m.SCHEMA_WARNING, holder, text)


def _follows_convention(name: str) -> bool:
    lowered = name.lower()
    return any(lowered == p or lowered.startswith(p + "-") for p in _PROTOCOLS)


def check_port_names(ctx: Context) -> None:
    """IST0118: a Service port whose protocol Istio can only guess (no appProtocol, no name prefix);
    IST0150: a TCP (or unnamed) port on an ExternalName Service."""
    for svc in ctx.kind("Service"):
        if svc.group or svc.namespace in SYSTEM_NAMESPACES or svc.namespace == ctx.root_namespace:
            continue
        if "gateway.istio.io/managed" in svc.str_map("labels"):
            continue
        external = svc.spec.get("type") == "ExternalName"
        for port in mappings(svc.spec.get("ports")):
            if not isinstance(port, Mapping):
                continue
            name = str(port.get("name", ""))
            if external:
                protocol = str(port.get("appProtocol") or name).lower()
                if protocol == "tcp" or protocol.startswith("tcp-") or not _follows_convention(protocol):
                    ctx.report(m.EXTERNAL_NAME_INVALID_PORT_NAME, svc, EXTERNAL_NAME_TEXT)
                continue
            if port.get("appProtocol") or _follows_convention(name):
                continue
            number = port.get("port")
            target = port.get("targetPort", number)
            ctx.report(
                m.PORT_NAME_NOT_UNDER_CONVENTION,
                svc,
                f"Port name {name} (port: {number}, targetPort: {target}) "
                "doesn't follow the naming convention of Istio port.",
            )


#: Istio CRDs that were removed (group, kind).
REMOVED_CRDS = frozenset(
    ("rbac.istio.io", kind)
    for kind in ("ClusterRbacConfig", "RbacConfig", "ServiceRole", "ServiceRoleBinding")
)


def check_deprecation(ctx: Context) -> None:
    """IST0002: ``fault.delay.percent``, ``Sidecar.outboundTrafficPolicy.egressProxy``, removed CRDs."""
    for vs in ctx.kind("VirtualService"):
        for rule in mappings(vs.spec.get("http")):
            fault = rule.get("fault") if isinstance(rule, Mapping) else None
            delay = fault.get("delay") if isinstance(fault, Mapping) else None
            if isinstance(delay, Mapping) and isinstance(delay.get("percent"), int) and delay["percent"] > 0:
                ctx.report(
                    m.DEPRECATED,
                    vs,
                    "Deprecated: HTTPRoute.fault.delay.percent is deprecated; "
                    "use HTTPRoute.fault.delay.percentage",
                )
    for sc in ctx.kind("Sidecar"):
        policy = sc.spec.get("outboundTrafficPolicy")
        if isinstance(policy, Mapping) and policy.get("egressProxy") is not None:
            ctx.report(m.DEPRECATED, sc, "Deprecated: OutboundTrafficPolicy.EgressProxy ignored")
    for crd in ctx.kind("CustomResourceDefinition"):
        names = crd.spec.get("names")
        kind = names.get("kind") if isinstance(names, Mapping) else None
        if (str(crd.spec.get("group")), str(kind)) in REMOVED_CRDS:
            ctx.report(
                m.DEPRECATED,
                crd,
                f"Deprecated: Custom resource type {crd.spec.get('group')} {kind} is removed",
            )
