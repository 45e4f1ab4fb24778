"""Router proxies: Gateway servers → listeners, bound VirtualServices → routes (LDS + RDS)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from meshplane.pilot.generators.common import istio_metadata, pack, sds_source
from meshplane.pilot.generators.filters import http_manager, tcp_destinations, tcp_proxy
from meshplane.pilot.generators.httproute import routes_for
from meshplane.pilot.model.config import Config, fqdn, host_matches
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext

Server = dict[str, Any]


def _servers(ctx: PushContext, proxy: Proxy) -> list[tuple[Config, Server]]:
    return [(gw, s) for gw in ctx.gateways_for(proxy) for s in gw.spec.get("servers") or []]


def _hosts(server: Server) -> list[str]:
    return [str(h).split("/", 1)[-1] for h in server.get("hosts") or []]


def _route_name(gw: Config, server: Server) -> str:
    port = server.get("port") or {}
    protocol = str(port.get("protocol", "HTTP")).upper()
    if protocol == "HTTPS" or (
        protocol == "HTTP" and server.get("tls") and not server["tls"].get("httpsRedirect")
    ):
        return f"https.{port.get('number')}.{port.get('name', '')}.{gw.name}.{gw.namespace}"
    return f"http.{port.get('number')}"


def _downstream_tls(tls: dict[str, Any]) -> tls_pb2.DownstreamTlsContext:
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    cred = str(tls.get("credentialName") or "")
    common.tls_certificate_sds_secret_configs.append(
        secret_pb2.SdsSecretConfig(name=f"kubernetes://{cred}", sds_config=sds_source())
    )
    if str(tls.get("mode", "SIMPLE")).upper() == "MUTUAL":
        ctx.require_client_certificate.value = True
        common.validation_context_sds_secret_config.CopyFrom(
            secret_pb2.SdsSecretConfig(name=f"kubernetes://{cred}-cacert", sds_config=sds_source())
        )
    common.alpn_protocols.extend(["h2", "http/1.1"])
    return ctx


def _bound_vs(ctx: PushContext, gw: Config) -> list[Config]:
    return ctx.virtual_services(gw.namespace, f"{gw.namespace}/{gw.name}")


def gateway_listeners(ctx: PushContext, proxy: Proxy) -> list[listener_pb2.Listener]:
    by_port: dict[tuple[str, int], listener_pb2.Listener] = {}
    for gw, server in _servers(ctx, proxy):
        port = server.get("port") or {}
        number = int(port.get("number", 0))
        bind = str(server.get("bind") or "0.0.0.0")
        key = (bind, number)
        lis = by_port.get(key)
        if lis is None:
            lis = listener_pb2.Listener(
                name=f"{bind}_{number}",
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=bind, port_value=number)
                ),
            )
            lis.enable_reuse_port.value = False
            by_port[key] = lis
        protocol = str(port.get("protocol", "HTTP")).upper()
        tls = server.get("tls") or {}
        mode = str(tls.get("mode", "")).upper()
        if protocol in ("HTTP", "HTTP2", "GRPC") and not (tls and not tls.get("httpsRedirect")):
            if not any(c.name == f"http.{number}" for c in lis.filter_chains):
                lis.filter_chains.add(name=f"http.{number}").filters.append(
                    http_manager(f"outbound_{bind}_{number}", rds=f"http.{number}")
                )
        elif mode in ("SIMPLE", "MUTUAL"):
            _add_tls_inspector(lis)
            chain = lis.filter_chains.add(name=_route_name(gw, server))
            chain.filter_chain_match.server_names.extend(h for h in _hosts(server) if h != "*")
            chain.filters.append(http_manager(f"outbound_{bind}_{number}", rds=_route_name(gw, server)))
            chain.transport_socket.name = "envoy.transport_sockets.tls"
            chain.transport_socket.typed_config.CopyFrom(pack(_downstream_tls(tls)))
        elif mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") or protocol in ("TLS", "TCP"):
            if protocol != "TCP":
                _add_tls_inspector(lis)
            lis.filter_chains.extend(_tcp_chains(ctx, gw, server, number, protocol))
    return list(by_port.values())


def _add_tls_inspector(lis: listener_pb2.Listener) -> None:
    if not any(f.name == "envoy.filters.listener.tls_inspector" for f in lis.listener_filters):
        lis.listener_filters.add(name="envoy.filters.listener.tls_inspector").typed_config.CopyFrom(
            pack(tls_inspector_pb2.TlsInspector())
        )


def _tcp_chains(
    ctx: PushContext, gw: Config, server: Server, number: int, protocol: str
) -> list[lc.FilterChain]:
    chains = []
    server_hosts = _hosts(server)
    for vs in _bound_vs(ctx, gw):
        for section in ("tls", "tcp"):
            for r in vs.spec.get(section) or []:
                for m in r.get("match") or [{}]:
                    if m.get("port") and int(m["port"]) != number:
                        continue
                    sni = [str(s) for s in m.get("sniHosts") or []]
                    if section == "tls" and not any(host_matches(h, s) for h in server_hosts for s in sni):
                        continue
                    chain = lc.FilterChain()
                    chain.filter_chain_match.server_names.extend(sni)
                    dests = tcp_destinations(r.get("route") or [], vs.namespace, number)
                    chain.filters.append(tcp_proxy(f"{gw.name}_{number}", "", dests))
                    chains.append(chain)
    return chains


def gateway_routes(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    cfg = route_pb2.RouteConfiguration(name=name)
    cfg.validate_clusters.value = False
    vhosts: dict[str, rc.VirtualHost] = {}
    for gw, server in _servers(ctx, proxy):
        if _route_name(gw, server) != name:
            continue
        number = int((server.get("port") or {}).get("number", 0))
        server_hosts = _hosts(server)
        redirect = bool((server.get("tls") or {}).get("httpsRedirect"))
        for vs in _bound_vs(ctx, gw):
            for host in vs.spec.get("hosts") or []:
                h = fqdn(str(host), vs.namespace) if "." not in str(host) and host != "*" else str(host)
                if not any(host_matches(s, h) or host_matches(h, s) for s in server_hosts):
                    continue
                if h in vhosts:
                    continue
                vh = rc.VirtualHost(name=f"{h}:{number}", domains=[h, f"{h}:{number}"])
                vh.metadata.CopyFrom(istio_metadata([vs]))
                if redirect:
                    vh.require_tls = rc.VirtualHost.ALL
                vh.routes.extend(routes_for(vs, ctx, number, proxy.labels, f"{gw.namespace}/{gw.name}"))
                vhosts[h] = vh
    cfg.virtual_hosts.extend(vhosts.values())
    return cfg
