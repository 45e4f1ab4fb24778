"""VirtualService destinations as istioctl's DestinationHostAnalyzer reads them: a destination or
mirror host no visible Service/ServiceEntry defines (IST0101), a port the service lacks (IST0101),
no port towards a multi-port service (IST0112), and subsets that have no effect on routes of
ingress-gateway VirtualServices (IST0140).

Visibility follows Istio: a Service is seen where its ``networking.istio.io/exportTo`` annotation
says (everywhere without it), a ServiceEntry where its ``exportTo`` says; the lookup uses the
VirtualService's own ``exportTo`` namespaces when it has some (else its namespace), and wildcard
ServiceEntry hosts only when exported everywhere or to the VirtualService's namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, fqdn, go_list, mappings, strs

ALL = "*"
_EXPORT_ANNOTATION = "networking.istio.io/exportTo"


@dataclass(frozen=True, slots=True)
class _Dest:
    host: str
    port: int | None
    mirror: bool


def _port(dest: Mapping[str, Any]) -> int | None:
    port = dest.get("port")
    number = port.get("number") if isinstance(port, Mapping) else None
    return number if isinstance(number, int) else None


def _dest(raw: object, mirror: bool) -> _Dest:
    d = raw if isinstance(raw, Mapping) else {}
    return _Dest(str(d.get("host") or ""), _port(d), mirror)


def _route_destinations(vs: Resource) -> Iterator[_Dest]:
    """Every route destination (a route without one counts, with host ""), then the HTTP mirrors."""
    for section in ("tcp", "tls", "http"):
        for rule in mappings(vs.spec.get(section)):
            for route in mappings(rule.get("route")):
                yield _dest(route.get("destination"), False)
    for rule in mappings(vs.spec.get("http")):
        if isinstance(rule.get("mirror"), Mapping):
            yield _dest(rule["mirror"], True)
        for mirror in mappings(rule.get("mirrors")):
            yield _dest(mirror.get("destination"), True)


def _scoped_hosts(ctx: Context) -> dict[tuple[str, str], list[int]]:
    """(visible-in namespace or ``*``, FQDN host) -> the service's ports."""
    hosts: dict[tuple[str, str], list[int]] = {}
    for se in ctx.kind("ServiceEntry"):
        ports = [p["number"] for p in mappings(se.spec.get("ports")) if isinstance(p.get("number"), int)]
        export = strs(se.spec.get("exportTo"))
        scopes = [ALL] if not export or ALL in export else [se.namespace if e == "." else e for e in export]
        for host in strs(se.spec.get("hosts")):
            for scope in scopes:
                hosts[(scope, fqdn(host, se.namespace))] = ports
    for svc in ctx.kind("Service"):
        if svc.group:
            continue
        ports = [p["port"] for p in mappings(svc.spec.get("ports")) if isinstance(p.get("port"), int)]
        anno = svc.str_map("annotations").get(_EXPORT_ANNOTATION, "")
        scopes = [svc.namespace if s.strip() == "." else s.strip() for s in anno.split(",")]
        if not anno:
            scopes = [ALL]
        for scope in scopes:
            hosts[(scope, fqdn(svc.name, svc.namespace))] = ports
    return hosts


def _lookup(hosts: dict[tuple[str, str], list[int]], vs: Resource, raw: str) -> list[int] | None:
    host = fqdn(raw, vs.namespace)
    if (ALL, host) in hosts:
        return hosts[(ALL, host)]
    export = strs(vs.spec.get("exportTo"))
    for scope in [vs.namespace if e == "." else e for e in export] or [vs.namespace]:
        if (scope, host) in hosts:
            return hosts[(scope, host)]
    bare = host.removeprefix("*")
    for (scope, se_host), ports in hosts.items():
        if se_host.startswith("*") and scope in (ALL, vs.namespace) and bare.endswith(se_host[1:]):
            return ports
    return None


def _check_ports(ctx: Context, vs: Resource, dest: _Dest, ports: list[int]) -> None:
    if dest.port is None:
        if len(ports) > 1:
            ctx.report(
                m.VS_DESTINATION_PORT_REQUIRED,
                vs,
                f'This VirtualService routes to a service "{dest.host}" that exposes multiple ports '
                f"{go_list(ports)}. Specifying a port in the destination is required to disambiguate.",
            )
    elif dest.port not in ports:
        ctx.report(
            m.REFERENCED_RESOURCE_NOT_FOUND, vs, f'Referenced host:port not found: "{dest.host}:{dest.port}"'
        )


def _subset_destinations(ctx: Context) -> dict[str, list[str]]:
    """``ns/name`` of each VirtualService -> hosts of its HTTP routes that name a subset and are
    among its own hosts (as written)."""
    found: dict[str, list[str]] = {}
    for vs in ctx.kind("VirtualService"):
        own = strs(vs.spec.get("hosts"))
        for rule in mappings(vs.spec.get("http")):
            for route in mappings(rule.get("route")):
                d = route.get("destination")
                if isinstance(d, Mapping) and d.get("subset") and str(d.get("host")) in own:
                    found.setdefault(f"{vs.namespace}/{vs.name}", []).append(str(d.get("host")))
    return found


def _check_ingress_subsets(ctx: Context, vs: Resource, with_subsets: dict[str, list[str]]) -> None:
    if not strs(vs.spec.get("gateways")):
        return
    for rule in mappings(vs.spec.get("http")):
        for route in mappings(rule.get("route")):
            d = route.get("destination")
            if not isinstance(d, Mapping) or d.get("subset"):
                continue
            for other, hosts in with_subsets.items():
                for host in hosts:
                    if host == str(d.get("host")):
                        ctx.report(
                            m.INGRESS_ROUTE_RULES_NOT_AFFECTED,
                            vs,
                            f"Subset in virtual service {other} has no effect on ingress gateway "
                            f"{vs.namespace}/{vs.name} requests",
                        )


def check_destination_hosts(ctx: Context) -> None:
    """IST0101 (host, mirror host, host:port), IST0112 and IST0140 (see the module docstring)."""
    hosts = _scoped_hosts(ctx)
    with_subsets = _subset_destinations(ctx)
    for vs in ctx.kind("VirtualService"):
        _check_ingress_subsets(ctx, vs, with_subsets)
        for dest in _route_destinations(vs):
            ports = _lookup(hosts, vs, dest.host)
            if ports is None:
                what = "mirror host" if dest.mirror else "host"
                ctx.report(m.REFERENCED_RESOURCE_NOT_FOUND, vs, f'Referenced {what} not found: "{dest.host}"')
            else:
                _check_ports(ctx, vs, dest, ports)
