"""Proxyless gRPC clients (node metadata ``GENERATOR: grpc``): resources requested by name.

A client dialing ``xds:///host:port`` asks LDS for ``host:port`` (an ``api_listener`` whose HCM
uses RDS named the same), then RDS, CDS and EDS by name. Clusters and endpoints are the normal
outbound ones, so DestinationRules and subsets apply as for Envoy.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from meshplane.pilot.generators.common import ads_source, outbound, pack
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext


def _split(name: str) -> tuple[str, int] | None:
    host, _, port = name.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def grpc_listeners(ctx: PushContext, proxy: Proxy, names: frozenset[str]) -> list[listener_pb2.Listener]:
    out = []
    for name in sorted(names):
        target = _split(name)
        if target is None or ctx.service(target[0], proxy.namespace) is None:
            continue
        mgr = hcm.HttpConnectionManager(stat_prefix=name)
        mgr.rds.route_config_name = name
        mgr.rds.config_source.CopyFrom(ads_source())
        mgr.http_filters.add(name="envoy.filters.http.router").typed_config.CopyFrom(
            pack(router_pb2.Router())
        )
        lis = listener_pb2.Listener(name=name)
        lis.api_listener.api_listener.CopyFrom(pack(mgr))
        out.append(lis)
    return out


def grpc_route(ctx: PushContext, proxy: Proxy, name: str) -> route_pb2.RouteConfiguration:
    cfg = route_pb2.RouteConfiguration(name=name)
    target = _split(name)
    svc = ctx.service(target[0], proxy.namespace) if target else None
    if target is None or svc is None:
        return cfg
    host, port = target
    vh = cfg.virtual_hosts.add(name=name, domains=[name, host])
    route = vh.routes.add(match=rc.RouteMatch(prefix=""))
    route.route.cluster = outbound(port, "", svc.hostname)
    return cfg
