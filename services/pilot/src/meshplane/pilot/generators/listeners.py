"""LDS for sidecars: virtualOutbound/virtualInbound, per-port outbound and Sidecar egress/ingress."""

from __future__ import annotations

import functools

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2

from meshplane.pilot.generators.accesslog import apply_access_logs
from meshplane.pilot.generators.common import (
    BLACKHOLE,
    INBOUND_PASSTHROUGH,
    PASSTHROUGH,
    cidr_range,
    outbound,
    pack,
)
from meshplane.pilot.generators.filters import http_manager, tcp_destinations, tcp_proxy
from meshplane.pilot.generators.httproute import matches_context
from meshplane.pilot.generators.proxyheaders import apply_proxy_headers
from meshplane.pilot.generators.security import inbound as security
from meshplane.pilot.generators.security.sds import retarget_listeners
from meshplane.pilot.generators.sniffing import add_http_inspector, detect_http_inbound, detect_http_outbound
from meshplane.pilot.generators.tracing import apply_tracing
from meshplane.pilot.model.config import Port, Service, fqdn, given, host_matches
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext, SidecarScope
from meshplane.shared.config.models import L4MatchAttributes, SidecarPort
from meshplane.shared.config.models.sidecar import CaptureMode
from meshplane.shared.config.models.telemetry import WorkloadMode

#: The match of a tcp route that has none: every connection.
_ANY_CONNECTION = L4MatchAttributes()

KINDS = (
    frozenset({"VirtualService", "Sidecar", "Gateway", "ServiceEntry", "WorkloadEntry", "Telemetry"})
    | security.KINDS
)


def _listener(name: str, host: str, port: int, bind: bool = True) -> listener_pb2.Listener:
    lis = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port)),
    )
    if not bind:
        lis.bind_to_port.value = False
    lis.enable_reuse_port.value = False
    return lis


def _inbound_route(port: int) -> route_pb2.RouteConfiguration:
    cluster = f"inbound|{port}||"
    cfg = route_pb2.RouteConfiguration(name=cluster)
    cfg.validate_clusters.value = False
    vh = cfg.virtual_hosts.add(name=f"inbound|http|{port}", domains=["*"])
    r = vh.routes.add(match=rc.RouteMatch(prefix="/"), name="default")
    r.route.cluster = cluster
    r.route.timeout.SetInParent()
    return cfg


def _inbound_chain(port: int, http: bool) -> lc.FilterChain:
    chain = lc.FilterChain(name=f"0.0.0.0_{port}")
    if http:
        chain.filters.append(http_manager(f"inbound_0.0.0.0_{port}", route_config=_inbound_route(port)))
    else:
        chain.filters.append(tcp_proxy(f"inbound|{port}||", f"inbound|{port}||"))
    return chain


def _tcp_routes(
    ctx: PushContext, proxy: Proxy, svc: Service, port: Port
) -> list[tuple[tuple[str, ...], list[tuple[str, int]]]]:
    """The first VirtualService's ``tcp`` routes for this service port that apply to this proxy
    (by port, ``sourceLabels``, ``sourceNamespace`` and ``gateways``), in order, as (destination
    subnets, weighted destinations); empty subnets match any destination, and end the list
    (later routes could never be chosen)."""
    for vs in ctx.virtual_services(proxy.namespace, None):
        hosts = [fqdn(h, vs.namespace) for h in vs.spec.hosts or []]
        if not any(host_matches(h, svc.hostname) for h in hosts):
            continue
        out: list[tuple[tuple[str, ...], list[tuple[str, int]]]] = []
        seen: set[tuple[str, ...]] = set()
        for tcp in vs.spec.tcp or []:
            applying = [
                m
                for m in tcp.match or [_ANY_CONNECTION]
                if matches_context(m, proxy.labels, None, port.number, proxy.namespace)
            ]
            if not applying:
                continue
            subnets: tuple[str, ...] = ()
            if all(m.destination_subnets for m in applying):
                subnets = tuple(sorted({c for m in applying for c in m.destination_subnets or []}))
            if subnets in seen:  # an earlier route already takes these destinations
                continue
            seen.add(subnets)
            out.append((subnets, tcp_destinations(tcp.route or [], vs.namespace, port.number)))
            if not subnets:
                break
        if out:
            return out
    return []


def _tls_chains(ctx: PushContext, proxy: Proxy, svc: Service, port: Port) -> list[lc.FilterChain]:
    chains = []
    for vs in ctx.virtual_services(proxy.namespace, None):
        if not any(host_matches(fqdn(h, vs.namespace), svc.hostname) for h in vs.spec.hosts or []):
            continue
        for tls in vs.spec.tls or []:
            for m in tls.match or []:
                if not matches_context(m, proxy.labels, None, port.number, proxy.namespace):
                    continue
                chain = lc.FilterChain()
                chain.filter_chain_match.server_names.extend(m.sni_hosts or [])
                for cidr in m.destination_subnets or []:
                    chain.filter_chain_match.prefix_ranges.append(cidr_range(cidr))
                dests = tcp_destinations(tls.route or [], vs.namespace, port.number)
                chain.filters.append(tcp_proxy(f"outbound|{port.number}||{svc.hostname}", "", dests))
                chains.append(chain)
    return chains


def _outbound(
    ctx: PushContext, proxy: Proxy, scope: SidecarScope, bind_default: str, bind: bool
) -> list[listener_pb2.Listener]:
    """Outbound listeners: the Sidecar's explicit egress ports, else one per service port."""
    out: dict[str, listener_pb2.Listener] = {}
    explicit: list[tuple[int, str, str]] = []  # (port, protocol, bind)
    for eg in scope.egress:
        p = eg.port
        if p is not None and p.number:
            protocol = p.protocol if p.protocol is not None else "HTTP"
            explicit.append(
                (p.number, protocol.upper(), eg.bind or _egress_bind(eg.capture_mode, bind_default))
            )
    catch_all = not explicit or (bind_default == "0.0.0.0" and any(not given(eg.port) for eg in scope.egress))
    http_ports: dict[int, str] = {}
    for number, protocol, address in explicit:
        if Port("", number, protocol).is_http:
            http_ports[number] = address
            continue
        svc = next((s for s in ctx.services_for(proxy, scope, number) if s.port(number) is not None), None)
        if svc is not None:
            cluster = outbound(number, "", svc.hostname)
            lis = _listener(f"{address}_{number}", address, number, True)
            lis.filter_chains.add().filters.append(tcp_proxy(cluster, cluster))
            out[lis.name] = lis
    taken = {number for number, _, _ in explicit}
    sniffed: dict[str, int] = {}  # listener name → port, for ports whose protocol is detected
    for svc in ctx.services_for(proxy, scope, 0) if catch_all else []:  # the portless egress's hosts
        for port in svc.ports:
            if port.number in taken:
                continue
            if port.is_http:
                http_ports.setdefault(port.number, bind_default)
                continue
            address = svc.addresses[0] if svc.addresses and bind_default == "0.0.0.0" else bind_default
            cidrs = [a for a in svc.addresses if "/" in a] if "/" in address else []
            if cidrs:  # as Istio: the wildcard listener, with a chain for the ranges
                address = bind_default
            name = f"{address}_{port.number}"
            lis = _tcp_listener(ctx, proxy, svc, port, name, address, bind, address == bind_default)
            for chain in lis.filter_chains if cidrs else ():
                if not chain.filter_chain_match.prefix_ranges:
                    chain.filter_chain_match.prefix_ranges.extend(cidr_range(c) for c in cidrs)
            if port.sniffed:
                sniffed[name] = port.number
            _merge(out, lis)
    for number, address in sorted(http_ports.items()):
        name = f"{address}_{number}"
        if name in sniffed:
            continue  # detected below: HTTP services share the sniffed port's HTTP chain and route
        lis = _listener(name, address, number, bind or address != "0.0.0.0")
        lis.filter_chains.add().filters.append(http_manager(f"outbound_{address}_{number}", rds=str(number)))
        out[name] = lis
    for name, number in sniffed.items():
        detect_http_outbound(out[name], number, f"outbound_{name}")
    return list(out.values())


def _egress_bind(capture: CaptureMode | None, bind_default: str) -> str:
    """An explicit egress port without ``bind``: ``captureMode: NONE`` on a proxy whose traffic is
    captured is a listener bound to localhost (Istio's); otherwise the proxy's default address."""
    return "127.0.0.1" if capture is CaptureMode.NONE and bind_default == "0.0.0.0" else bind_default


def _merge(out: dict[str, listener_pb2.Listener], lis: listener_pb2.Listener) -> None:
    """Add a listener, or the chains that match differently to the one already of that name
    (a CIDR ServiceEntry's chain beside another service's chain on the same wildcard port)."""
    have = out.get(lis.name)
    if have is None:
        out[lis.name] = lis
        return
    matches = [c.filter_chain_match for c in have.filter_chains]
    added = [c for c in lis.filter_chains if c.filter_chain_match not in matches]
    have.filter_chains.extend(added)
    names = {f.name for f in have.listener_filters}
    have.listener_filters.extend(f for f in lis.listener_filters if added and f.name not in names)


def _tcp_listener(
    ctx: PushContext,
    proxy: Proxy,
    svc: Service,
    port: Port,
    name: str,
    address: str,
    bind: bool,
    shared: bool = False,
) -> listener_pb2.Listener:
    """``shared``: the listener is the port's wildcard (or the proxy's own address), which other
    services of the port share: TLS there is told apart by SNI, as Istio's."""
    lis = _listener(name, address, port.number, bind)
    tls = _tls_chains(ctx, proxy, svc, port) if port.protocol in ("TLS", "HTTPS") else []
    if not tls and port.protocol in ("TLS", "HTTPS") and shared and svc.hostname != "*":
        # no tls route: the service's own host name is the SNI that selects it
        cluster = outbound(port.number, "", svc.hostname)
        chain = lc.FilterChain()
        chain.filter_chain_match.server_names.append(svc.hostname)
        chain.filters.append(tcp_proxy(cluster, cluster))
        tls = [chain]
    if tls:
        lis.listener_filters.add(name="envoy.filters.listener.tls_inspector").typed_config.CopyFrom(
            pack(tls_inspector_pb2.TlsInspector())
        )
        lis.filter_chains.extend(tls)
    else:
        cluster = outbound(port.number, "", svc.hostname)
        routes = _tcp_routes(ctx, proxy, svc, port)
        for subnets, dests in routes:
            chain = lis.filter_chains.add()
            chain.filter_chain_match.prefix_ranges.extend(cidr_range(c) for c in subnets)
            chain.filters.append(tcp_proxy(cluster, cluster, dests or None))
        if not routes or routes[-1][0]:  # no route for every destination: the service itself
            lis.filter_chains.add().filters.append(tcp_proxy(cluster, cluster))
    return lis


def _virtual_outbound(scope: SidecarScope) -> listener_pb2.Listener:
    lis = _listener("virtualOutbound", "0.0.0.0", 15001)
    lis.use_original_dst.value = True
    lis.listener_filters.add(name="envoy.filters.listener.original_dst").typed_config.CopyFrom(
        pack(original_dst_pb2.OriginalDst())
    )
    target = BLACKHOLE if scope.outbound_traffic_policy == "REGISTRY_ONLY" else PASSTHROUGH
    chain = lis.default_filter_chain
    chain.name = "virtualOutbound-blackhole" if target == BLACKHOLE else "virtualOutbound-catchall-tcp"
    chain.filters.append(tcp_proxy(target, target))
    return lis


def _kind(port: Port) -> str:
    """How an inbound port's connections are handled: ``http``, ``tcp``, or ``auto`` (detected)."""
    return "http" if port.is_http else "auto" if port.sniffed else "tcp"


def _inbound_ports(ctx: PushContext, proxy: Proxy, scope: SidecarScope) -> list[tuple[int, str, str]]:
    """(port, kind, bind) of the proxy's inbound side (kind: see ``_kind``)."""
    if scope.ingress:
        out = []
        for ing in scope.ingress:
            declared = ing.port or SidecarPort()
            number = declared.number or 0
            port = Port(declared.name or "", number, (declared.protocol or "").upper())
            out.append((number, _kind(port), ing.bind or ""))
        return out
    ports: dict[int, str] = {}
    for svc in ctx.workloads_for(proxy):
        for p in svc.ports:
            for ep in ctx.endpoints(svc.hostname, svc.namespace, p.number):
                if ep.address in proxy.instance_ips:
                    ports[ep.port] = _kind(p)
    return [(n, k, "") for n, k in sorted(ports.items())]


def _inbound_port_chains(
    ctx: PushContext, proxy: Proxy, number: int, kind: str, lis: listener_pb2.Listener
) -> list[lc.FilterChain]:
    """One inbound port's chains (mTLS per PeerAuthentication); both protocols when detected."""
    if kind != "auto":
        chain = functools.partial(_inbound_chain, number, kind == "http")
        return security.secure_inbound(ctx, proxy, number, lis, chain)
    http = security.secure_inbound(ctx, proxy, number, lis, functools.partial(_inbound_chain, number, True))
    tcp = security.secure_inbound(ctx, proxy, number, lis, functools.partial(_inbound_chain, number, False))
    add_http_inspector(lis)
    return detect_http_inbound(http, tcp)


def _virtual_inbound(
    ctx: PushContext, proxy: Proxy, ports: list[tuple[int, str, str]]
) -> listener_pb2.Listener:
    # No use_original_dst here (as in Istio): handing an inbound connection off by its original
    # destination would give it to the outbound 0.0.0.0_<port> listener of the same port, which
    # sends it back to this pod and around the capture loop. The original_dst listener filter
    # restores the destination so the chains below match on the workload port instead.
    lis = _listener("virtualInbound", "0.0.0.0", 15006)
    lis.listener_filters.add(name="envoy.filters.listener.original_dst").typed_config.CopyFrom(
        pack(original_dst_pb2.OriginalDst())
    )
    for number, kind, _bind in ports:
        for chain in _inbound_port_chains(ctx, proxy, number, kind, lis):
            chain.filter_chain_match.destination_port.value = number
            lis.filter_chains.append(chain)
    default = lis.default_filter_chain
    default.name = "PassthroughFilterChain"
    default.filters.append(tcp_proxy(INBOUND_PASSTHROUGH, INBOUND_PASSTHROUGH))
    return lis


def outbound_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    """The part shared by proxies of one scope (plus the proxy IP when there is no iptables)."""
    listeners = _outbound_listeners(ctx, proxy)
    retarget_listeners(proxy, listeners)
    apply_access_logs(ctx, proxy, listeners, WorkloadMode.CLIENT)
    apply_tracing(ctx, proxy, listeners, WorkloadMode.CLIENT)
    apply_proxy_headers(proxy, listeners)
    return listeners


def _outbound_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    if proxy.type is ProxyType.ROUTER:
        from meshplane.pilot.generators.gateway import gateway_listeners

        gateways = gateway_listeners(ctx, proxy)
        security.secure_gateway(ctx, proxy, gateways)
        return gateways
    scope = ctx.sidecar_scope(proxy)
    if proxy.interception_none:
        return _outbound(ctx, proxy, scope, proxy.ip, bind=True)
    return [_virtual_outbound(scope), *_outbound(ctx, proxy, scope, "0.0.0.0", bind=False)]


def inbound_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    """The proxy's own inbound side: virtualInbound, or bound Sidecar ingress listeners."""
    listeners = _inbound_listeners(ctx, proxy)
    retarget_listeners(proxy, listeners)
    apply_access_logs(ctx, proxy, listeners, WorkloadMode.SERVER)
    apply_tracing(ctx, proxy, listeners, WorkloadMode.SERVER)
    apply_proxy_headers(proxy, listeners)
    return listeners


def _inbound_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    if proxy.type is ProxyType.ROUTER:
        return []
    inbound = _inbound_ports(ctx, proxy, ctx.sidecar_scope(proxy))
    if not proxy.interception_none:
        return [_virtual_inbound(ctx, proxy, inbound)]
    listeners = []
    for number, kind, bind in inbound:
        address = bind or proxy.ip
        lis = _listener(f"{address}_{number}", address, number)
        lis.filter_chains.extend(_inbound_port_chains(ctx, proxy, number, kind, lis))
        listeners.append(lis)
    return listeners


def build_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    return outbound_listeners(ctx, proxy) + inbound_listeners(ctx, proxy)
