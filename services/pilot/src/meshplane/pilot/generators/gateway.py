"""Router proxies: Gateway servers → listeners, bound VirtualServices → routes (LDS + RDS)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.sni_cluster.v3 import sni_cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from meshplane.pilot.generators.common import (
    BLACKHOLE,
    ClusterKey,
    istio_metadata,
    pack,
    sds_source,
    sni_name,
)
from meshplane.pilot.generators.filters import http_manager, tcp_destinations, tcp_proxy
from meshplane.pilot.generators.httproute import routes_for
from meshplane.pilot.generators.security.upstream_tls import file_cert_name, file_root_name
from meshplane.pilot.model.config import Config, fqdn, given, host_matches
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import (
    Gateway,
    L4MatchAttributes,
    Port,
    Server,
    ServerTLSMode,
    ServerTLSSettings,
    TLSMatchAttributes,
    VirtualService,
)

#: The match of a tcp route that has none: every connection.
_ANY_CONNECTION = L4MatchAttributes()


def _servers(ctx: PushContext, proxy: Proxy) -> list[tuple[Config[Gateway], Server]]:
    return [(gw, s) for gw in ctx.gateways_for(proxy) for s in gw.spec.servers or []]


def _hosts(server: Server) -> list[str]:
    return [h.split("/", 1)[-1] for h in server.hosts or []]


def _hosts_for(gw: Config[Gateway], server: Server, namespace: str) -> list[str]:
    """The server hosts a VirtualService in ``namespace`` may bind: ``ns/host``, ``./host``, ``*/host``."""
    out = []
    for entry in server.hosts or []:
        scope, _, host = entry.rpartition("/")
        scope = gw.namespace if scope == "." else scope or "*"
        if scope in ("*", namespace):
            out.append(host)
    return out


def _protocol(port: Port) -> str:
    return (port.protocol if port.protocol is not None else "HTTP").upper()


def _route_name(gw: Config[Gateway], server: Server) -> str:
    port = server.port or Port()
    protocol = _protocol(port)
    tls = server.tls or ServerTLSSettings()
    if protocol == "HTTPS" or (protocol in ("HTTP", "HTTP2", "GRPC") and tls.mode and not tls.https_redirect):
        return f"https.{port.number}.{port.name or ''}.{gw.name}.{gw.namespace}"
    return f"http.{port.number}"


_SAN_TYPES = (
    common_pb2.SubjectAltNameMatcher.DNS,
    common_pb2.SubjectAltNameMatcher.URI,
    common_pb2.SubjectAltNameMatcher.EMAIL,
    common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
)


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    """No initial fetch timeout, as Istio: a listener added while its secret is missing (a
    credentialName whose Secret does not exist yet) stays warming until it appears, instead of
    going active after Envoy's default 15 s without a certificate."""
    config = secret_pb2.SdsSecretConfig(name=name, sds_config=sds_source())
    config.sds_config.initial_fetch_timeout.SetInParent()  # present and 0: wait indefinitely
    return config


def _downstream_tls(tls: ServerTLSSettings, alpn: tuple[str, ...]) -> tls_pb2.DownstreamTlsContext:
    """Terminating TLS as Istio's gateways do: ``credentialName`` is ``kubernetes://<name>`` over SDS,
    MUTUAL validates clients against ``kubernetes://<name>-cacert``; ISTIO_MUTUAL uses the workload's
    own ``default`` certificate and ``ROOTCA``. Without a credentialName, the files mounted in the
    gateway (``serverCertificate``, ``privateKey``, ``caCertificates``) are the SDS resources
    ``file-cert:<cert>~<key>`` and ``file-root:<ca>`` that the node agent reads, as Istio's agent
    does: a missing file leaves the listener warming instead of failing the whole update."""
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    mode = tls.mode or ServerTLSMode.SIMPLE
    cred = tls.credential_name or ""
    cert, ca = (f"kubernetes://{cred}", f"kubernetes://{cred}-cacert")
    if mode is ServerTLSMode.ISTIO_MUTUAL:
        cert, ca = "default", "ROOTCA"
    elif not cred and tls.server_certificate:
        cert = file_cert_name(tls.server_certificate, tls.private_key or "")
        ca = file_root_name(tls.ca_certificates or "")
    common.tls_certificate_sds_secret_configs.append(_sds(cert))
    if mode in (ServerTLSMode.MUTUAL, ServerTLSMode.OPTIONAL_MUTUAL, ServerTLSMode.ISTIO_MUTUAL):
        ctx.require_client_certificate.value = mode is not ServerTLSMode.OPTIONAL_MUTUAL
        combined = common.combined_validation_context
        validation = combined.default_validation_context
        validation.SetInParent()  # Envoy requires it, even empty
        combined.validation_context_sds_secret_config.CopyFrom(_sds(ca))
        for san in tls.subject_alt_names or []:
            for san_type in _SAN_TYPES:  # like the older untyped match: any kind of SAN may carry it
                validation.match_typed_subject_alt_names.add(
                    san_type=san_type, matcher=string_pb2.StringMatcher(exact=san)
                )
    _tls_params(common.tls_params, tls)
    common.alpn_protocols.extend(alpn)
    return ctx


def _tls_params(params: common_pb2.TlsParameters, tls: ServerTLSSettings) -> None:
    """Server ``minProtocolVersion``/``maxProtocolVersion`` (``TLSV1_2`` is ``TLSv1_2``), ``cipherSuites``."""
    for version, field in (
        (tls.min_protocol_version, "tls_minimum_protocol_version"),
        (tls.max_protocol_version, "tls_maximum_protocol_version"),
    ):
        if version is not None and version.startswith("TLSV1_"):
            setattr(params, field, common_pb2.TlsParameters.TlsProtocol.Value("TLSv1_" + version[-1]))
    params.cipher_suites.extend(tls.cipher_suites or [])


def _bound_vs(ctx: PushContext, gw: Config[Gateway]) -> list[Config[VirtualService]]:
    return ctx.virtual_services(gw.namespace, f"{gw.namespace}/{gw.name}")


def _new_listener(bind: str, number: int) -> listener_pb2.Listener:
    lis = listener_pb2.Listener(
        name=f"{bind}_{number}",
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=bind, port_value=number)
        ),
    )
    lis.enable_reuse_port.value = False
    return lis


def gateway_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    """One listener per (bind, port); one filter chain per server (per SNI route for PASSTHROUGH)."""
    by_port: dict[tuple[str, int], listener_pb2.Listener] = {}
    for gw, server in _servers(ctx, proxy):
        port = server.port or Port()
        number = port.number or 0
        bind = server.bind or "0.0.0.0"
        lis = by_port.get((bind, number))
        if lis is None:
            lis = by_port[(bind, number)] = _new_listener(bind, number)
        protocol = _protocol(port)
        tls = server.tls or ServerTLSSettings()
        mode: str = tls.mode if tls.mode is not None else ("SIMPLE" if given(server.tls) else "")
        sni = [h for h in _hosts(server) if h != "*"]
        if protocol in ("HTTP", "HTTP2", "GRPC") and (not mode or tls.https_redirect):
            if not any(c.name == f"http.{number}" for c in lis.filter_chains):
                lis.filter_chains.add(name=f"http.{number}").filters.append(
                    http_manager(f"outbound_{bind}_{number}", rds=f"http.{number}")
                )
        elif mode == "PASSTHROUGH":
            _add_tls_inspector(lis)
            lis.filter_chains.extend(_sni_chains(ctx, gw, server, number))
        elif mode == "AUTO_PASSTHROUGH":
            _add_tls_inspector(lis)
            lis.filter_chains.append(_auto_passthrough_chain(number, sni))
        elif protocol == "TCP" or (protocol == "TLS" and not mode):
            tcp = _tcp_chain(ctx, gw, server, number)
            if tcp is not None:
                lis.filter_chains.append(tcp)
        elif protocol == "TLS":
            tcp = _tcp_chain(ctx, gw, server, number)
            if tcp is not None:
                _add_tls_inspector(lis)
                tcp.filter_chain_match.server_names.extend(sni)
                _terminate(tcp, tls, ())
                lis.filter_chains.append(tcp)
        else:
            _add_tls_inspector(lis)
            chain = lis.filter_chains.add(name=_route_name(gw, server))
            chain.filter_chain_match.server_names.extend(sni)
            chain.filters.append(http_manager(f"outbound_{bind}_{number}", rds=_route_name(gw, server)))
            _terminate(chain, tls, ("h2", "http/1.1"))
    return [lis for lis in by_port.values() if lis.filter_chains]


def _terminate(chain: lc.FilterChain, tls: ServerTLSSettings, alpn: tuple[str, ...]) -> None:
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.CopyFrom(pack(_downstream_tls(tls, alpn)))


def _add_tls_inspector(lis: listener_pb2.Listener) -> None:
    if not any(f.name == "envoy.filters.listener.tls_inspector" for f in lis.listener_filters):
        lis.listener_filters.add(name="envoy.filters.listener.tls_inspector").typed_config.CopyFrom(
            pack(tls_inspector_pb2.TlsInspector())
        )


def _l4_match(m: TLSMatchAttributes | L4MatchAttributes, gw: Config[Gateway], number: int) -> bool:
    """A tcp/tls route match's ``port`` and ``gateways`` against this gateway server."""
    if m.port and m.port != number:
        return False
    gateways = m.gateways or []
    return not gateways or any(g in (gw.name, f"{gw.namespace}/{gw.name}") for g in gateways)


def _vs_for_server(ctx: PushContext, gw: Config[Gateway], server: Server) -> list[Config[VirtualService]]:
    """VirtualServices bound to the gateway whose hosts overlap the server's hosts."""
    out = []
    for vs in _bound_vs(ctx, gw):
        hosts = vs.spec.hosts or []
        server_hosts = _hosts_for(gw, server, vs.namespace)
        if any(host_matches(s, h) or host_matches(h, s) for s in server_hosts for h in hosts):
            out.append(vs)
    return out


def _tcp_chain(ctx: PushContext, gw: Config[Gateway], server: Server, number: int) -> lc.FilterChain | None:
    """Opaque TCP (or TLS terminated here): the first matching ``tcp`` route, as Istio picks it."""
    for vs in _vs_for_server(ctx, gw, server):
        for r in vs.spec.tcp or []:
            if any(_l4_match(m, gw, number) for m in r.match or [_ANY_CONNECTION]):
                chain = lc.FilterChain(name=f"tcp.{number}.{vs.namespace}.{vs.name}")
                dests = tcp_destinations(r.route or [], vs.namespace, number)
                chain.filters.append(tcp_proxy(f"{gw.name}_{number}", "", dests))
                return chain
    return None


def _sni_chains(ctx: PushContext, gw: Config[Gateway], server: Server, number: int) -> list[lc.FilterChain]:
    """PASSTHROUGH: one chain per ``tls`` route match, keyed on the SNI names the server accepts."""
    chains = []
    seen: set[str] = set()
    for vs in _vs_for_server(ctx, gw, server):
        server_hosts = _hosts_for(gw, server, vs.namespace)
        for r in vs.spec.tls or []:
            for m in r.match or []:
                if not _l4_match(m, gw, number):
                    continue
                sni = [
                    s
                    for s in m.sni_hosts or []
                    if s not in seen and any(host_matches(h, s) for h in server_hosts)
                ]
                if not sni:
                    continue
                seen.update(sni)
                chain = lc.FilterChain(name=f"sni.{number}.{sni[0]}")
                chain.filter_chain_match.server_names.extend(sni)
                dests = tcp_destinations(r.route or [], vs.namespace, number)
                chain.filters.append(tcp_proxy(f"{gw.name}_{number}", "", dests))
                chains.append(chain)
    return chains


def _auto_passthrough_chain(number: int, sni: list[str]) -> lc.FilterChain:
    """AUTO_PASSTHROUGH: the SNI (``outbound_.<port>_.<subset>_.<host>``) names the cluster; no routes."""
    chain = lc.FilterChain(name=f"auto-passthrough.{number}")
    chain.filter_chain_match.server_names.extend(sni)
    chain.filters.add(name="envoy.filters.network.sni_cluster").typed_config.CopyFrom(
        pack(sni_cluster_pb2.SniCluster())
    )
    chain.filters.append(tcp_proxy(f"auto-passthrough_{number}", BLACKHOLE))
    return chain


def has_auto_passthrough(ctx: PushContext, proxy: Proxy) -> bool:
    """A router with an AUTO_PASSTHROUGH Gateway server (Istio's SNI-DNAT, east-west gateway)."""
    return proxy.type is ProxyType.ROUTER and any(
        s.tls is not None and s.tls.mode is ServerTLSMode.AUTO_PASSTHROUGH for _, s in _servers(ctx, proxy)
    )


def sni_dnat_clusters(
    ctx: PushContext, proxy: Proxy, outbound: list[cluster_pb2.Cluster]
) -> list[cluster_pb2.Cluster]:
    """For a router with an AUTO_PASSTHROUGH server: each outbound cluster again under its SNI name,
    without TLS of its own (the client's TLS passes through), as Istio's SNI-DNAT clusters."""
    if not has_auto_passthrough(ctx, proxy):
        return []
    out = []
    for c in outbound:
        key = ClusterKey.parse(c.name)
        if key is None or key.direction != "outbound":
            continue
        dnat = cluster_pb2.Cluster()
        dnat.CopyFrom(c)
        dnat.name = sni_name(key)
        dnat.ClearField("transport_socket")
        dnat.ClearField("transport_socket_matches")
        dnat.ClearField("typed_extension_protocol_options")  # opaque bytes: no HTTP/2 upstream
        if dnat.HasField("eds_cluster_config"):
            dnat.eds_cluster_config.service_name = dnat.name
        if dnat.HasField("load_assignment"):
            dnat.load_assignment.cluster_name = dnat.name
        out.append(dnat)
    return out


def gateway_routes(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    cfg = route_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    cfg.validate_clusters.value = False
    vhosts: dict[str, rc.VirtualHost] = {}
    for gw, server in _servers(ctx, proxy):
        if _route_name(gw, server) != name:
            continue
        number = (server.port.number if server.port else None) or 0
        redirect = bool(server.tls and server.tls.https_redirect)
        for vs in _bound_vs(ctx, gw):
            server_hosts = _hosts_for(gw, server, vs.namespace)
            for host in vs.spec.hosts or []:
                h = fqdn(host, vs.namespace) if "." not in host and host != "*" else host
                if not any(host_matches(s, h) or host_matches(h, s) for s in server_hosts):
                    continue
                if h in vhosts:
                    continue
                vh = rc.VirtualHost(name=f"{h}:{number}", domains=[h])
                vh.metadata.CopyFrom(istio_metadata([vs]))
                if redirect:
                    vh.require_tls = rc.VirtualHost.ALL
                gw_name = f"{gw.namespace}/{gw.name}"
                vh.routes.extend(
                    routes_for(vs, ctx, number, proxy.labels, gw_name, proxy_namespace=proxy.namespace)
                )
                vhosts[h] = vh
    cfg.virtual_hosts.extend(vhosts.values())
    return cfg
