"""RDS: sidecar route configurations (named by port) and gateway route configurations."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from meshplane.pilot.generators.common import PASSTHROUGH, istio_metadata, outbound, previous_hosts
from meshplane.pilot.generators.httproute import hash_policy_for, routes_for
from meshplane.pilot.model.config import DOMAIN_SUFFIX, Config, Service, fqdn, host_matches
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import VirtualService

KINDS = frozenset({"VirtualService", "DestinationRule", "Sidecar", "Gateway", "ServiceEntry"})


def domains(host: str, viewer_ns: str, addresses: tuple[str, ...] = ()) -> list[str]:
    """Names a client may use for a host: FQDN, short forms in its namespace, and addresses.

    Without ``:port`` forms: route configurations set ``ignore_port_in_host_matching`` (Istio
    1.16+), so ``svc:9080`` matches ``svc``, and a route configuration is half the size.
    """
    names = [host]
    suffix = f".{DOMAIN_SUFFIX}"
    if host.endswith(suffix):
        short = host[: -len(suffix)]  # name.ns
        name, _, ns = short.partition(".")
        names += [short, f"{short}.svc"]
        if ns == viewer_ns:
            names.append(name)
    return names + [a for a in addresses if "/" not in a]  # a CIDR is matched by listeners, not Host


def _default_route(cluster: str) -> rc.Route:
    route = rc.Route(match=rc.RouteMatch(prefix="/"), name="default")
    route.route.cluster = cluster
    route.route.timeout.SetInParent()
    rp = route.route.retry_policy
    rp.retry_on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    rp.num_retries.value = 2
    rp.retriable_status_codes.append(503)
    previous_hosts(rp)
    return route


def sidecar_route_config(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    """Route ``"<port>"``: one virtual host per HTTP (or sniffed) service on that port, VirtualServices
    applied."""
    rcfg = route_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    rcfg.validate_clusters.value = False
    if not name.isdigit():
        return rcfg
    port = int(name)
    scope = ctx.sidecar_scope(proxy)
    services = [
        s
        for s in ctx.services_for(proxy, scope, port)
        if any(p.number == port and (p.is_http or p.sniffed) for p in s.ports)
    ]
    vss = ctx.virtual_services(proxy.namespace, None)
    used: set[str] = set()
    for svc in services:
        vh = _virtual_host(ctx, proxy, svc, port, vss, used)
        rcfg.virtual_hosts.append(vh)
    if scope.outbound_traffic_policy == "REGISTRY_ONLY":
        vh = rcfg.virtual_hosts.add(name="block_all", domains=["*"])
        r = vh.routes.add(match=rc.RouteMatch(prefix="/"), name="block_all")
        r.direct_response.status = 502
    else:
        vh = rcfg.virtual_hosts.add(name="allow_any", domains=["*"])
        r = vh.routes.add(match=rc.RouteMatch(prefix="/"), name="allow_any")
        r.route.cluster = PASSTHROUGH
        r.route.timeout.SetInParent()
    return rcfg


def _virtual_host(
    ctx: PushContext,
    proxy: Proxy,
    svc: Service,
    port: int,
    vss: list[Config[VirtualService]],
    used: set[str],
) -> rc.VirtualHost:
    vh = rc.VirtualHost(name=f"{svc.hostname}:{port}")
    for d in domains(svc.hostname, proxy.namespace, svc.addresses):
        if d not in used:
            used.add(d)
            vh.domains.append(d)
    vh.include_request_attempt_count = True
    for vs in vss:
        hosts = [fqdn(h, vs.namespace) for h in vs.spec.hosts or []]
        if any(host_matches(h, svc.hostname) for h in hosts):
            vh.routes.extend(routes_for(vs, ctx, port, proxy.labels, None, proxy_namespace=proxy.namespace))
            vh.metadata.CopyFrom(istio_metadata([vs]))
            break
    if not vh.routes or vh.routes[-1].match.prefix != "/" or len(vh.routes[-1].match.headers):
        default = _default_route(outbound(port, "", svc.hostname))
        hp = hash_policy_for(ctx, default.route.cluster, proxy.namespace)
        if hp is not None:
            default.route.hash_policy.append(hp)
        vh.routes.append(default)
    return vh


def gateway_route_config(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    """Route ``http.<port>`` (or ``https.<port>.<server>.<gw>.<ns>``) for a router proxy."""
    from meshplane.pilot.generators.gateway import gateway_routes

    return gateway_routes(ctx, proxy, name)


def build_route(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    if proxy.type is ProxyType.ROUTER:
        return gateway_route_config(ctx, proxy, name)
    return sidecar_route_config(ctx, proxy, name)
