"""Gateway analyzers: a selector that matches no pod (IST0101), a server port no Service of the
gateway pods offers (IST0162), a missing or unusable ``credentialName`` Secret (IST0101, IST0161),
one certificate on several gateways (IST0138) and gateways that claim the same selector, port and
host (IST0145)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import (
    Context,
    Resource,
    go_list,
    mappings,
    selector_text,
    selects,
    str_dict,
    strs,
)
from meshplane.shared.analysis.credential import valid_tls_credential


def selector(gw: Resource) -> dict[str, str]:
    return str_dict(gw.spec.get("selector"))


def _servers(gw: Resource) -> list[Mapping[str, Any]]:
    return mappings(gw.spec.get("servers"))


def _port(server: Mapping[str, Any]) -> int | None:
    port = server.get("port")
    number = port.get("number") if isinstance(port, Mapping) else None
    return number if isinstance(number, int) else None


def _tls(server: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tls = server.get("tls")
    return tls if isinstance(tls, Mapping) else None


def _report_no_pods(ctx: Context, gw: Resource) -> bool:
    """IST0101 when the selector matches no pod; True when it was reported."""
    if ctx.pods(selector(gw)):
        return False
    ctx.report(
        m.REFERENCED_RESOURCE_NOT_FOUND, gw, f'Referenced selector not found: "{selector_text(selector(gw))}"'
    )
    return True


def check_ports(ctx: Context) -> None:
    """IST0162: a server port that no TCP port of a Service selecting the gateway pods offers."""
    for gw in ctx.kind("Gateway"):
        if _report_no_pods(ctx, gw):
            continue
        offered: set[int] = set()
        for pod in ctx.pods(selector(gw)):
            for svc in ctx.kind("Service"):
                sel = str_dict(svc.spec.get("selector"))
                if svc.namespace != pod.namespace or not sel or not selects(sel, pod.str_map("labels")):
                    continue
                for port in mappings(svc.spec.get("ports")):
                    if str(port.get("protocol") or "TCP") == "TCP" and isinstance(port.get("port"), int):
                        offered.add(port["port"])
        for server in _servers(gw):
            number = _port(server)
            if number is not None and number not in offered:
                ctx.report(
                    m.GATEWAY_PORT_NOT_ON_SERVICE,
                    gw,
                    f"The gateway is listening on a target port (port {number}) that is not defined in the "
                    "Service associated with its workload instances "
                    f"(Pod selector {selector_text(selector(gw))}). If you need to access the gateway port "
                    "through the gateway Service, it will not be available.",
                )


def _credential_names(server: Mapping[str, Any]) -> list[str]:
    tls = _tls(server) or {}
    names = [str(tls["credentialName"])] if tls.get("credentialName") else []
    return names + [n for n in strs(tls.get("credentialNames")) if n]


def check_secrets(ctx: Context) -> None:
    """IST0101: ``credentialName`` naming a Secret absent from the gateway workload's namespace;
    IST0161: a Secret that holds no usable certificate and key."""
    for gw in ctx.kind("Gateway"):
        pods = ctx.pods(selector(gw))
        if _report_no_pods(ctx, gw):
            continue
        namespace = pods[0].namespace
        for server in _servers(gw):
            for name in _credential_names(server):
                ns, sep, short = name.partition("/")
                secret = ctx.find("Secret", ns if sep else namespace, short if sep else name)
                if secret is None:
                    ctx.report(
                        m.REFERENCED_RESOURCE_NOT_FOUND, gw, f'Referenced credentialName not found: "{name}"'
                    )
                elif not valid_tls_credential(secret):
                    ctx.report(
                        m.INVALID_GATEWAY_CREDENTIAL,
                        gw,
                        f"The credential referenced by the Gateway {gw.name} in namespace {gw.namespace} is "
                        "invalid, which can cause the traffic not to work as expected.",
                    )


def _same_certificate(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("credentialName") and b.get("credentialName"):
        return bool(a["credentialName"] == b["credentialName"])
    if a.get("credentialName") or b.get("credentialName"):
        return False
    return bool(
        a.get("serverCertificate")
        and a.get("serverCertificate") == b.get("serverCertificate")
        and a.get("privateKey")
        and a.get("privateKey") == b.get("privateKey")
    )


def _subset(x: Mapping[str, str], y: Mapping[str, str]) -> bool:
    return all(y.get(k) == v for k, v in x.items())


def check_certificates(ctx: Context) -> None:
    """IST0138: the same certificate on servers of gateways whose selectors overlap."""
    gateways = ctx.kind("Gateway")
    for gw in gateways:
        for other in gateways:
            if other is gw or not _subset(selector(gw), selector(other)):
                continue
            for server in _servers(gw):
                for other_server in _servers(other):
                    a, b = _tls(server), _tls(other_server)
                    if a is not None and b is not None and _same_certificate(a, b):
                        names = go_list([f"{gw.namespace}/{gw.name}", f"{other.namespace}/{other.name}"])
                        ctx.report(
                            m.GATEWAY_DUPLICATE_CERTIFICATE,
                            gw,
                            f"Duplicate certificate in multiple gateways {names} may cause 404s if clients "
                            "re-use HTTP2 connections.",
                        )


def _related(ctx: Context, a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """istioctl's test for two gateway selectors: equal, or one's text contains the other's and some
    pod matches both."""
    ta, tb = selector_text(a), selector_text(b)
    if ta == tb:
        return True
    return (ta in tb or tb in ta) and any(selects(a, p.str_map("labels")) for p in ctx.pods(b))


def check_conflicts(ctx: Context) -> None:
    """IST0145, once per server of a gateway: other gateways on related selectors (see ``_related``)
    and the same port declare one of its hosts (as written) with the same bind."""
    gateways = ctx.kind("Gateway")
    for gw in gateways:
        _report_no_pods(ctx, gw)
        related = [o for o in gateways if o is not gw and _related(ctx, selector(gw), selector(o))]
        for server in _servers(gw):
            number = _port(server)
            hosts, bind = strs(server.get("hosts")), str(server.get("bind") or "")
            clashing = sorted(
                f"{o.namespace}/{o.name}"
                for o in related
                if any(
                    _port(s) == number
                    and str(s.get("bind") or "") == bind
                    and set(strs(s.get("hosts"))) & set(hosts)
                    for s in _servers(o)
                )
            )
            if clashing:
                ctx.report(
                    m.CONFLICTING_GATEWAYS,
                    gw,
                    f"Conflict with gateways {','.join(clashing)} (workload selector "
                    f"{selector_text(selector(gw))}, port {number}, hosts {','.join(hosts)}).",
                )
