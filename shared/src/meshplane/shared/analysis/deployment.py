"""Deployment analyzers: one port number with different protocols across the Services that select a
Deployment's pods (IST0116), one targetPort behind different ports (IST0137), and an istiod that
fetches JWKS URIs from any address while RequestAuthentications exist (IST0175)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, go_list, mappings, selects, str_dict
from meshplane.shared.analysis.injection import INJECTION_LABEL, REVISION_LABEL, SYSTEM_NAMESPACES


def _template_metadata(deploy: Resource) -> Mapping[str, Any]:
    template = deploy.spec.get("template")
    md = template.get("metadata") if isinstance(template, Mapping) else None
    return md if isinstance(md, Mapping) else {}


def _in_mesh(ctx: Context, deploy: Resource) -> bool:
    md = _template_metadata(deploy)
    inject = str_dict(md.get("labels")).get("sidecar.istio.io/inject") or str_dict(md.get("annotations")).get(
        "sidecar.istio.io/inject"
    )
    if inject is not None:
        return inject == "true"
    ns = ctx.find("Namespace", "", deploy.namespace)
    if ns is None:
        return True  # namespace not among the inputs: assume it is part of the mesh
    labels = ns.str_map("labels")
    return labels.get(INJECTION_LABEL) == "enabled" or REVISION_LABEL in labels


def check(ctx: Context) -> None:
    for deploy in ctx.kind("Deployment"):
        if deploy.namespace in SYSTEM_NAMESPACES or not _in_mesh(ctx, deploy):
            continue
        pod_labels = str_dict(_template_metadata(deploy).get("labels"))
        by_port: dict[int, dict[str, str]] = {}
        by_target: dict[str, dict[str, int]] = {}
        for svc in ctx.kind("Service"):
            selector = str_dict(svc.spec.get("selector"))
            if svc.namespace != deploy.namespace or not selector or not selects(selector, pod_labels):
                continue
            for port in mappings(svc.spec.get("ports")):
                number = port.get("port")
                if not isinstance(number, int):
                    continue
                by_port.setdefault(number, {})[svc.name] = str(port.get("protocol") or "TCP")
                by_target.setdefault(str(port.get("targetPort", number)), {})[svc.name] = number
        prefix = f"This deployment {deploy.name} is associated with multiple services"
        for number, protocols in sorted(by_port.items()):
            if len(set(protocols.values())) > 1:
                text = f"{prefix} using port {number} but different protocols: {go_list(sorted(protocols))}"
                ctx.report(m.DEPLOYMENT_MULTIPLE_SERVICES, deploy, text)
        for target, ports in sorted(by_target.items()):
            if len(set(ports.values())) > 1:
                numbers = go_list(sorted(set(ports.values())))
                text = f'{prefix} {go_list(sorted(ports))} using targetPort "{target}" '
                text += f"but different ports: {numbers}."
                ctx.report(m.DEPLOYMENT_CONFLICTING_PORTS, deploy, text)


BLOCKED_CIDRS_ENV = "BLOCKED_CIDRS_IN_JWKS_URIS"


def check_jwks_fetch(ctx: Context) -> None:
    """IST0175: RequestAuthentications exist but istiod fetches JWKS URIs from any address."""
    authns = sorted(f"{r.namespace}/{r.name}" for r in ctx.kind("RequestAuthentication"))
    istiod = ctx.find("Deployment", ctx.root_namespace, "istiod")
    if not authns or istiod is None:
        return
    spec = istiod.spec.get("template")
    pod_spec = spec.get("spec") if isinstance(spec, Mapping) else None
    containers = mappings(pod_spec.get("containers")) if isinstance(pod_spec, Mapping) else []
    env = [e for c in containers for e in mappings(c.get("env"))]
    if any(e.get("name") == BLOCKED_CIDRS_ENV and e.get("value") for e in env):
        return
    ctx.report(
        m.JWKS_URI_FETCH_UNRESTRICTED,
        istiod,
        f"{BLOCKED_CIDRS_ENV} is not configured but {len(authns)} RequestAuthentication resource(s) exist "
        f"({', '.join(authns)}). Consider configuring it to restrict JWKS URI fetches to trusted networks.",
    )
