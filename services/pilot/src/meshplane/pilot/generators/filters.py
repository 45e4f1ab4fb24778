"""Network filters shared by sidecar and gateway listeners: HTTP connection manager, TCP proxy."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshplane.pilot.generators.common import ads_source, outbound, pack
from meshplane.pilot.model.config import fqdn
from meshplane.shared.config.models import RouteDestination

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"


def http_manager(
    stat_prefix: str, rds: str | None = None, route_config: route_pb2.RouteConfiguration | None = None
) -> lc.Filter:
    """An HCM with Istio's filter order: fault, cors, router; routes over RDS or inline."""
    mgr = hcm.HttpConnectionManager(stat_prefix=stat_prefix)
    if rds is not None:
        mgr.rds.route_config_name = rds
        mgr.rds.config_source.CopyFrom(ads_source())
    elif route_config is not None:
        mgr.route_config.CopyFrom(route_config)
    mgr.http_filters.add(name="envoy.filters.http.fault").typed_config.CopyFrom(pack(fault_pb2.HTTPFault()))
    mgr.http_filters.add(name="envoy.filters.http.cors").typed_config.CopyFrom(pack(cors_pb2.Cors()))
    mgr.http_filters.add(name="envoy.filters.http.router").typed_config.CopyFrom(pack(router_pb2.Router()))
    mgr.normalize_path.value = True
    mgr.stream_idle_timeout.SetInParent()
    return lc.Filter(name=HCM, typed_config=pack(mgr))


def tcp_proxy(stat_prefix: str, cluster: str, weighted: list[tuple[str, int]] | None = None) -> lc.Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if weighted and len(weighted) > 1:
        for name, weight in weighted:
            proxy.weighted_clusters.clusters.add(name=name, weight=max(weight, 1))
    else:
        proxy.cluster = weighted[0][0] if weighted else cluster
    return lc.Filter(name=TCP_PROXY, typed_config=pack(proxy))


def tcp_destinations(routes: list[RouteDestination], namespace: str, port: int) -> list[tuple[str, int]]:
    """Weighted clusters of a VirtualService tcp/tls route."""
    out = []
    for r in routes:
        d = r.destination
        dest_port = d.port.number if d.port and d.port.number is not None else port
        out.append(
            (
                outbound(dest_port, d.subset or "", fqdn(d.host, namespace)),
                r.weight if r.weight is not None else 100,
            )
        )
    return out
