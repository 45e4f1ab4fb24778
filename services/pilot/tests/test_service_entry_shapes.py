"""ServiceEntry shapes as Istio builds them: protocol sniffing for ports without a protocol,
DNS_ROUND_ROBIN clusters, subjectAltNames, and VirtualService matches naming a gateway."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.gateway import gateway_routes
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"


def cfg(kind: str, name: str, spec: dict[str, Any], ns: str = "default") -> Config[Any]:
    return Config.parse(kind, "networking.istio.io", "v1", ns, name, spec)


def ctx(*configs: Config[Any]) -> PushContext:
    return build_push_context("1", {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}, {}, {})


def proxy(node: str, labels: dict[str, str]) -> Any:
    md = struct_pb2.Struct()
    md.update({"LABELS": labels})
    return parse_proxy(node, md)


SIDECAR = proxy("sidecar~10.0.0.2~pp.default~default.svc.cluster.local", {"app": "productpage"})
DB = cfg(
    "ServiceEntry",
    "db",
    {
        "hosts": ["db.default.svc.cluster.local"],
        "ports": [{"number": 3306, "name": "db"}, {"number": 8080, "name": "http", "protocol": "HTTP"}],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "endpoints": [{"address": "10.0.0.9"}, {"address": "10.0.0.2"}],
    },
)


def _listener(listeners: list[listener_pb2.Listener], name: str) -> listener_pb2.Listener:
    return next(lis for lis in listeners if lis.name == name)


def _shape(lis: listener_pb2.Listener) -> list[tuple[str, tuple[str, ...], str]]:
    return [
        (
            c.filter_chain_match.transport_protocol,
            tuple(c.filter_chain_match.application_protocols),
            c.filters[-1].name,
        )
        for c in lis.filter_chains
    ]


def test_a_port_without_protocol_detects_http_and_keeps_tcp_for_the_rest() -> None:
    listeners = build_listeners(ctx(DB), SIDECAR)
    db = _listener(listeners, "0.0.0.0_3306")
    assert [f.name for f in db.listener_filters] == [
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert db.continue_on_listener_filters_timeout and db.listener_filters_timeout.ToSeconds() == 0
    plain = ("http/1.0", "http/1.1", "h2c")
    assert _shape(db) == [("raw_buffer", plain, HCM), ("raw_buffer", (), TCP_PROXY), ("", (), TCP_PROXY)]
    # its HTTP chain routes by the port's route, which names the sniffed service
    route = build_route(ctx(DB), SIDECAR, "3306")
    assert "db.default.svc.cluster.local" in [d for vh in route.virtual_hosts for d in vh.domains]
    # a declared HTTP port is plain HTTP, no inspector
    http = _listener(listeners, "0.0.0.0_8080")
    assert _shape(http) == [("", (), HCM)] and not http.listener_filters


def test_inbound_sniffed_port_is_split_by_transport_and_alpn() -> None:
    peer = Config.parse(
        "PeerAuthentication",
        "security.istio.io",
        "v1",
        "default",
        "default",
        {"mtls": {"mode": "PERMISSIVE"}},
    )
    inbound = _listener(build_listeners(ctx(DB, peer), SIDECAR), "virtualInbound")
    chains = [c for c in inbound.filter_chains if c.filter_chain_match.destination_port.value == 3306]
    shape = {(t, a, f) for t, a, f in _shape(listener_pb2.Listener(filter_chains=chains))}
    assert ("tls", ("istio-http/1.0", "istio-http/1.1", "istio-h2"), HCM) in shape
    assert ("tls", ("istio-peer-exchange", "istio"), TCP_PROXY) in shape
    assert ("raw_buffer", ("http/1.0", "http/1.1", "h2c"), HCM) in shape
    assert ("raw_buffer", (), TCP_PROXY) in shape
    assert ("tls", (), TCP_PROXY) in shape  # the app's own TLS: carried as TCP, never to the HCM
    assert ("tls", (), HCM) not in shape


def _cluster(clusters: list[cluster_pb2.Cluster], name: str) -> cluster_pb2.Cluster:
    return next(c for c in clusters if c.name == name)


def test_dns_round_robin_is_logical_dns_with_one_address_and_no_empty_subsets() -> None:
    se = cfg(
        "ServiceEntry",
        "rr",
        {
            "hosts": ["rr.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS_ROUND_ROBIN",
        },
    )
    subsets = [{"name": "v1", "labels": {"v": "1"}}, {"name": "all"}]
    dr = cfg("DestinationRule", "rr", {"host": "rr.example.com", "subsets": subsets})
    clusters = build_clusters(ctx(se, dr), SIDECAR)
    for name in ("outbound|80||rr.example.com", "outbound|80|all|rr.example.com"):
        c = _cluster(clusters, name)
        assert c.type == cluster_pb2.Cluster.LOGICAL_DNS, name
        endpoints = [e for group in c.load_assignment.endpoints for e in group.lb_endpoints]
        assert [e.endpoint.address.socket_address.address for e in endpoints] == ["rr.example.com"], name
    # no address carries the labels of v1: no cluster, as Istio (an empty LOGICAL_DNS is rejected)
    assert "outbound|80|v1|rr.example.com" not in [c.name for c in clusters]


def test_service_entry_subject_alt_names_are_checked_under_istio_mutual() -> None:
    se = cfg(
        "ServiceEntry",
        "vm",
        {
            "hosts": ["vm.example.mesh"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "subjectAltNames": ["spiffe://cluster.local/ns/default/sa/vm"],
            "endpoints": [{"address": "10.0.0.7", "labels": {"security.istio.io/tlsMode": "istio"}}],
        },
    )
    dr = cfg(
        "DestinationRule",
        "vm",
        {"host": "vm.example.mesh", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    )
    for configs in ((se, dr), (se,)):  # a DestinationRule's ISTIO_MUTUAL, and auto mTLS
        c = _cluster(build_clusters(ctx(*configs), SIDECAR), "outbound|80||vm.example.mesh")
        sockets = [c.transport_socket] if c.HasField("transport_socket") else []
        sockets += [m.transport_socket for m in c.transport_socket_matches if m.name == "tlsMode-istio"]
        up = tls_pb2.UpstreamTlsContext()
        sockets[0].typed_config.Unpack(up)
        sans = up.common_tls_context.combined_validation_context.default_validation_context
        assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == [
            "spiffe://cluster.local/ns/default/sa/vm"
        ]


def _gateway_vs(ns: str, vs_gateway: str) -> Config[Any]:
    dest = {"destination": {"host": "db.default.svc.cluster.local", "port": {"number": 8080}}}
    spec = {
        "hosts": ["out.example.com"],
        "gateways": [vs_gateway, "mesh"],
        "http": [{"match": [{"gateways": ["egress"], "port": 80}], "route": [dest]}],
    }
    return cfg("VirtualService", "out", spec, ns=ns)


def test_a_route_match_names_its_gateway_as_the_virtual_service_does() -> None:
    server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    gw = cfg(
        "Gateway", "egress", {"selector": {"istio": "egressgateway"}, "servers": [server]}, "istio-system"
    )
    router = proxy(
        "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local", {"istio": "egressgateway"}
    )
    same_ns = gateway_routes(ctx(DB, gw, _gateway_vs("istio-system", "egress")), router, "http.80")
    assert [len(vh.routes) for vh in same_ns.virtual_hosts] == [1]
    # bound to the gateway from another namespace, the match's short name "egress" is default/egress
    other_ns = gateway_routes(ctx(DB, gw, _gateway_vs("default", "istio-system/egress")), router, "http.80")
    assert [len(vh.routes) for vh in other_ns.virtual_hosts] == [0]


def _tls_entry(name: str, host: str, addresses: list[str] | None = None) -> Config[Any]:
    spec: dict[str, Any] = {
        "hosts": [host],
        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
    }
    if addresses:
        spec["addresses"] = addresses
    return cfg("ServiceEntry", name, spec)


def test_tls_services_sharing_a_port_are_told_apart_by_sni() -> None:
    entries = (_tls_entry("a", "a.example.com"), _tls_entry("b", "*.b.example.com"))
    vip = _tls_entry("c", "c.example.com", ["240.0.0.3"])
    listeners = build_listeners(ctx(*entries, vip), SIDECAR)
    shared = _listener(listeners, "0.0.0.0_443")
    assert [list(c.filter_chain_match.server_names) for c in shared.filter_chains] == [
        ["a.example.com"],
        ["*.b.example.com"],
    ]
    assert [f.name for f in shared.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    # a service with its own address has its own listener: every connection to it is its own
    own = _listener(listeners, "240.0.0.3_443")
    assert [list(c.filter_chain_match.server_names) for c in own.filter_chains] == [[]]
