"""Gateway TLS modes, ISTIO_MUTUAL clusters, delegate VirtualServices, exportTo and sourceLabels."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.config import Config, Port, Service
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context

REVIEWS = "reviews.default.svc.cluster.local"


def cfg(kind: str, name: str, spec: dict[str, Any], ns: str = "default") -> Config:
    return Config.parse(kind, "networking.istio.io", "v1", ns, name, spec)


def ctx(*configs: Config) -> PushContext:
    services = {"r": Service(REVIEWS, "default", (Port("http", 9080, "HTTP"),))}
    return build_push_context("1", {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}, services, {})


def proxy(node: str, labels: dict[str, str]) -> Any:
    md = struct_pb2.Struct()
    md.update({"LABELS": labels})
    return parse_proxy(node, md)


ROUTER = proxy("router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local", {"istio": "ingressgateway"})
SIDECAR = proxy("sidecar~10.0.0.2~pp.default~default.svc.cluster.local", {"app": "productpage"})


def test_gateway_simple_tls_redirect_and_passthrough() -> None:
    gw = cfg(
        "Gateway",
        "gw",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["shop.example.com"],
                    "tls": {"httpsRedirect": True},
                },
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["shop.example.com"],
                    "tls": {"mode": "SIMPLE", "credentialName": "shop-cert"},
                },
                {
                    "port": {"number": 8443, "name": "tls", "protocol": "TLS"},
                    "hosts": ["db.example.com"],
                    "tls": {"mode": "PASSTHROUGH"},
                },
            ],
        },
        ns="istio-system",
    )
    vs = cfg(
        "VirtualService",
        "shop",
        {
            "hosts": ["shop.example.com"],
            "gateways": ["istio-system/gw"],
            "http": [{"route": [{"destination": {"host": "reviews"}}]}],
        },
    )
    tls_vs = cfg(
        "VirtualService",
        "db",
        {
            "hosts": ["db.example.com"],
            "gateways": ["istio-system/gw"],
            "tls": [
                {
                    "match": [{"sniHosts": ["db.example.com"], "port": 8443}],
                    "route": [{"destination": {"host": "reviews", "port": {"number": 9080}}}],
                }
            ],
        },
    )
    c = ctx(gw, vs, tls_vs)
    listeners: dict[str, listener_pb2.Listener] = {x.name: x for x in build_listeners(c, ROUTER)}
    assert set(listeners) == {"0.0.0.0_80", "0.0.0.0_443", "0.0.0.0_8443"}
    redirect = build_route(c, ROUTER, "http.80")
    assert redirect.virtual_hosts[0].require_tls == redirect.virtual_hosts[0].ALL
    https = listeners["0.0.0.0_443"].filter_chains[0]
    assert list(https.filter_chain_match.server_names) == ["shop.example.com"]
    down = tls_pb2.DownstreamTlsContext()
    https.transport_socket.typed_config.Unpack(down)
    assert down.common_tls_context.tls_certificate_sds_secret_configs[0].name == "kubernetes://shop-cert"
    https_route = build_route(c, ROUTER, "https.443.https.gw.istio-system")
    assert https_route.virtual_hosts[0].routes[0].route.cluster == f"outbound|9080||{REVIEWS}"
    passthrough = listeners["0.0.0.0_8443"]
    assert passthrough.listener_filters[0].name == "envoy.filters.listener.tls_inspector"
    assert list(passthrough.filter_chains[0].filter_chain_match.server_names) == ["db.example.com"]


def test_istio_mutual_cluster_uses_sds_default_and_rootca() -> None:
    dr = cfg("DestinationRule", "r", {"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    cluster = next(x for x in build_clusters(ctx(dr), SIDECAR) if x.name == f"outbound|9080||{REVIEWS}")
    up = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(up)
    assert up.sni == f"outbound_.9080_._.{REVIEWS}"
    assert up.common_tls_context.tls_certificate_sds_secret_configs[0].name == "default"
    sds = up.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config
    assert sds.api_config_source.grpc_services[0].envoy_grpc.cluster_name == "sds-grpc"
    assert (
        up.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name
        == "ROOTCA"
    )


def test_delegate_and_source_labels() -> None:
    root = cfg(
        "VirtualService",
        "root",
        {
            "hosts": ["reviews"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/api"}}],
                    "delegate": {"name": "child", "namespace": "default"},
                },
                {
                    "match": [{"sourceLabels": {"app": "other"}}],
                    "route": [{"destination": {"host": "reviews", "subset": "x"}}],
                },
            ],
        },
    )
    child = cfg(
        "VirtualService",
        "child",
        {
            "http": [
                {
                    "match": [{"uri": {"prefix": "/api/v2"}}],
                    "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                },
                {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
            ]
        },
    )
    rc = build_route(ctx(root, child), SIDECAR, "9080")
    vh = next(v for v in rc.virtual_hosts if v.name.startswith(REVIEWS))
    prefixes = [(r.match.prefix, r.route.cluster) for r in vh.routes]
    assert prefixes[0] == ("/api/v2", f"outbound|9080|v2|{REVIEWS}")
    assert prefixes[1] == ("/api", f"outbound|9080|v1|{REVIEWS}")
    assert not any("|x|" in c for _, c in prefixes)  # sourceLabels app=other does not match productpage
    meta = vh.routes[0].metadata.filter_metadata["istio"].fields["config"].string_value
    assert meta.endswith("/virtual-service/child")


def test_http_source_namespace_match_applies_only_to_proxies_in_that_namespace() -> None:
    vs = cfg(
        "VirtualService",
        "reviews",
        {
            "hosts": ["reviews.default.svc.cluster.local"],
            "http": [
                {
                    "match": [{"sourceNamespace": "batch"}],
                    "route": [{"destination": {"host": "reviews.default.svc.cluster.local", "subset": "b"}}],
                },
                {"route": [{"destination": {"host": "reviews.default.svc.cluster.local", "subset": "a"}}]},
            ],
        },
    )
    batch = proxy("sidecar~10.0.0.7~job.batch~batch.svc.cluster.local", {"app": "job"})

    def clusters(p: Any) -> list[str]:
        vh = next(v for v in build_route(ctx(vs), p, "9080").virtual_hosts if v.name.startswith(REVIEWS))
        return [r.route.cluster.split("|")[2] for r in vh.routes]

    assert clusters(batch) == ["b", "a"]
    assert clusters(SIDECAR) == ["a"]


def test_export_to_hides_config_from_other_namespaces() -> None:
    vs = cfg(
        "VirtualService",
        "private",
        {
            "hosts": [REVIEWS],
            "exportTo": ["."],
            "http": [{"route": [{"destination": {"host": REVIEWS, "subset": "v9"}}]}],
        },
        ns="team-a",
    )
    rc = build_route(ctx(vs), SIDECAR, "9080")
    vh = next(v for v in rc.virtual_hosts if v.name.startswith(REVIEWS))
    assert all("|v9|" not in r.route.cluster for r in vh.routes)
    other = proxy("sidecar~10.0.0.3~x.team-a~team-a.svc.cluster.local", {})
    vh_a = next(v for v in build_route(ctx(vs), other, "9080").virtual_hosts if v.name.startswith(REVIEWS))
    assert vh_a.routes[0].route.cluster == f"outbound|9080|v9|{REVIEWS}"


def test_sidecar_tcp_route_weights_and_tls_sni_chains() -> None:
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    db = Service(
        "db.default.svc.cluster.local", "default", (Port("tcp", 5432, "TCP"),), addresses=("10.9.0.1",)
    )
    api = Service("api.example.com", "default", (Port("tls", 443, "TLS"),), resolution="DNS")
    vs_tcp = cfg(
        "VirtualService",
        "db",
        {
            "hosts": ["db"],
            "tcp": [
                {
                    "route": [
                        {"destination": {"host": "db", "subset": "primary"}, "weight": 90},
                        {"destination": {"host": "db", "subset": "replica"}, "weight": 10},
                    ]
                }
            ],
        },
    )
    vs_tls = cfg(
        "VirtualService",
        "api",
        {
            "hosts": ["api.example.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["api.example.com"], "port": 443}],
                    "route": [{"destination": {"host": "api.example.com"}}],
                }
            ],
        },
    )
    c = build_push_context("1", {"a": vs_tcp, "b": vs_tls}, {"db": db, "api": api}, {})
    listeners = {x.name: x for x in build_listeners(c, SIDECAR)}
    tcp = tcp_proxy_pb2.TcpProxy()
    listeners["10.9.0.1_5432"].filter_chains[0].filters[0].typed_config.Unpack(tcp)
    weights = {w.name: w.weight for w in tcp.weighted_clusters.clusters}
    assert weights == {
        "outbound|5432|primary|db.default.svc.cluster.local": 90,
        "outbound|5432|replica|db.default.svc.cluster.local": 10,
    }
    tls = listeners["0.0.0.0_443"]
    assert list(tls.filter_chains[0].filter_chain_match.server_names) == ["api.example.com"]


def test_l4_matches_by_source_labels_namespace_and_destination_subnets() -> None:
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    db = Service("db.default.svc.cluster.local", "default", (Port("tcp", 5432, "TCP"),))
    api = Service("api.example.com", "default", (Port("tls", 443, "TLS"),), resolution="DNS")

    def to(subset: str) -> list[dict[str, Any]]:
        return [{"destination": {"host": "db", "subset": subset}}]

    vs_tcp = cfg(
        "VirtualService",
        "db",
        {
            "hosts": ["db"],
            "tcp": [
                {"match": [{"sourceLabels": {"app": "reports"}}], "route": to("reports")},
                {"match": [{"sourceNamespace": "batch"}], "route": to("batch")},
                {"match": [{"destinationSubnets": ["10.1.0.0/16", "10.2.0.9"]}], "route": to("near")},
                {"match": [{"destinationSubnets": ["10.2.0.9", "10.1.0.0/16"]}], "route": to("shadowed")},
                {"route": to("rest")},
                {"route": to("never")},  # after a catch-all
            ],
        },
    )
    vs_tls = cfg(
        "VirtualService",
        "api",
        {
            "hosts": ["api.example.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["api.example.com"], "sourceLabels": {"app": "reports"}}],
                    "route": [{"destination": {"host": "api.example.com"}}],
                },
                {
                    "match": [{"sniHosts": ["api.example.com"], "destinationSubnets": ["192.0.2.0/24"]}],
                    "route": [{"destination": {"host": "api.example.com"}}],
                },
            ],
        },
    )
    c = build_push_context("1", {"a": vs_tcp, "b": vs_tls}, {"db": db, "api": api}, {})

    def chains(p: Any) -> list[tuple[list[str], str]]:
        out = []
        for chain in {x.name: x for x in build_listeners(c, p)}["0.0.0.0_5432"].filter_chains:
            tcp = tcp_proxy_pb2.TcpProxy()
            chain.filters[0].typed_config.Unpack(tcp)
            ranges = [
                f"{r.address_prefix}/{r.prefix_len.value}" for r in chain.filter_chain_match.prefix_ranges
            ]
            out.append((ranges, tcp.cluster.split("|")[2]))
        return out

    reports = proxy("sidecar~10.0.0.3~r.default~default.svc.cluster.local", {"app": "reports"})
    batch = proxy("sidecar~10.0.0.4~b.batch~batch.svc.cluster.local", {"app": "job"})
    assert chains(reports) == [([], "reports")]
    assert chains(batch) == [([], "batch")]
    assert chains(SIDECAR) == [(["10.1.0.0/16", "10.2.0.9/32"], "near"), ([], "rest")]
    tls_for_sidecar = {x.name: x for x in build_listeners(c, SIDECAR)}["0.0.0.0_443"].filter_chains
    assert len(tls_for_sidecar) == 1  # the sourceLabels match is not for this proxy
    assert tls_for_sidecar[0].filter_chain_match.prefix_ranges[0].address_prefix == "192.0.2.0"
    assert len({x.name: x for x in build_listeners(c, reports)}["0.0.0.0_443"].filter_chains) == 2


def test_sidecar_egress_hosts_are_kept_per_port() -> None:
    """A port's egress listener imports its own hosts; other ports get the portless listener's."""
    ports = (Port("http-80", 80, "HTTP"), Port("http-81", 81, "HTTP"), Port("http-82", 82, "HTTP"))
    services = {n: Service(f"{n}.default.svc.cluster.local", "default", ports) for n in ("a", "b", "c")}
    sidecar = cfg(
        "Sidecar",
        "default",
        {
            "egress": [
                {
                    "port": {"number": 80, "protocol": "HTTP", "name": "p80"},
                    "hosts": ["./a.default.svc.cluster.local"],
                },
                {
                    "port": {"number": 81, "protocol": "HTTP", "name": "p81"},
                    "hosts": ["./b.default.svc.cluster.local"],
                },
                {"hosts": ["./c.default.svc.cluster.local"]},
            ]
        },
    )
    context = build_push_context("1", {"s": sidecar}, services, {})

    def hosts(port: int) -> list[str]:
        route = build_route(context, SIDECAR, str(port))
        return [vh.name for vh in route.virtual_hosts if vh.name != "allow_any"]

    assert hosts(80) == ["a.default.svc.cluster.local:80"]
    assert hosts(81) == ["b.default.svc.cluster.local:81"]
    assert hosts(82) == ["c.default.svc.cluster.local:82"]
    scope = context.sidecar_scope(SIDECAR)
    assert sorted(s.hostname[0] for s in context.services_for(SIDECAR, scope)) == ["a", "b", "c"]  # clusters
