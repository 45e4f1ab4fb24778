"""Generators against a bookinfo-like push context: names, semantics and Istio metadata."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators import common
from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context

NS = "default"
REVIEWS = "reviews.default.svc.cluster.local"


def cfg(kind: str, name: str, spec: dict[str, Any], ns: str = NS) -> Config:
    return Config.parse(kind, "networking.istio.io", "v1", ns, name, spec)


def meta(**kv: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(kv)
    return s


def context(*configs: Config) -> PushContext:
    services = {
        "reviews": Service(REVIEWS, NS, (Port("http", 9080, "HTTP"),)),
        "db": Service(
            "db.default.svc.cluster.local", NS, (Port("tcp", 3306, "TCP"),), addresses=("10.0.0.9",)
        ),
    }
    workloads = {
        f"r{v}": Workload(
            f"reviews-{v}", NS, f"10.1.0.{i}", {"app": "reviews", "version": v}, services=(REVIEWS,)
        )
        for i, v in enumerate(("v1", "v2", "v3"), start=1)
    }
    return build_push_context("1", {f"{c.kind}/{c.name}": c for c in configs}, services, workloads)


SIDECAR = parse_proxy(
    "sidecar~10.1.0.9~productpage-v1.default~default.svc.cluster.local", meta(LABELS={"app": "productpage"})
)
DR = cfg(
    "DestinationRule",
    "reviews",
    {
        "host": "reviews",
        "trafficPolicy": {
            "connectionPool": {"tcp": {"maxConnections": 7}},
            "outlierDetection": {"consecutive5xxErrors": 3},
        },
        "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
    },
)


def test_cluster_names_and_special_clusters() -> None:
    names = {c.name for c in build_clusters(context(DR), SIDECAR)}
    assert {
        f"outbound|9080||{REVIEWS}",
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
        "outbound|3306||db.default.svc.cluster.local",
        "BlackHoleCluster",
        "PassthroughCluster",
    } <= names


def test_destination_rule_policy_and_source_metadata() -> None:
    cluster = next(c for c in build_clusters(context(DR), SIDECAR) if c.name == f"outbound|9080|v1|{REVIEWS}")
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.circuit_breakers.thresholds[0].max_connections.value == 7
    assert cluster.outlier_detection.consecutive_5xx.value == 3
    source = cluster.metadata.filter_metadata["istio"].fields["config"].string_value
    assert source == "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"


def test_local_origin_outlier_detection_and_maglev_table_size() -> None:
    """splitExternalLocalOriginErrors/consecutiveLocalOriginFailures: Envoy's split mode, local
    failures enforced at 100 %, local-origin success-rate ejection off (as Istio sets them);
    maglev tableSize: the cluster's maglev_lb_config."""
    od = {
        "consecutive5xxErrors": 3,
        "splitExternalLocalOriginErrors": True,
        "consecutiveLocalOriginFailures": 4,
    }
    dr = cfg("DestinationRule", "reviews", {"host": "reviews", "trafficPolicy": {"outlierDetection": od}})
    cluster = next(c for c in build_clusters(context(dr), SIDECAR) if c.name == f"outbound|9080||{REVIEWS}")
    out = cluster.outlier_detection
    assert out.split_external_local_origin_errors is True
    assert out.consecutive_local_origin_failure.value == 4
    assert out.enforcing_consecutive_local_origin_failure.value == 100
    assert (
        out.HasField("enforcing_local_origin_success_rate")
        and out.enforcing_local_origin_success_rate.value == 0
    )
    maglev = {
        "host": "reviews",
        "trafficPolicy": {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65537}}}},
    }
    hashed = build_clusters(context(cfg("DestinationRule", "reviews", maglev)), SIDECAR)
    cluster = next(c for c in hashed if c.name == f"outbound|9080||{REVIEWS}")
    assert (
        cluster.lb_policy == cluster_pb2.Cluster.MAGLEV and cluster.maglev_lb_config.table_size.value == 65537
    )
    plain = next(c for c in build_clusters(context(DR), SIDECAR) if c.name == f"outbound|9080||{REVIEWS}")
    assert not plain.outlier_detection.split_external_local_origin_errors
    assert not plain.outlier_detection.HasField("consecutive_local_origin_failure")


def test_warmup_is_envoy_slow_start_on_round_robin_and_least_request() -> None:
    warmup = {"duration": "30s", "minimumPercent": 10, "aggression": 2}
    policies = {
        "v1": {"loadBalancer": {"simple": "ROUND_ROBIN", "warmup": warmup}},
        "v2": {"loadBalancer": {"simple": "LEAST_REQUEST", "warmupDurationSecs": "9s"}},
    }
    spec = {
        "host": "reviews",
        "subsets": [{"name": v, "labels": {"version": v}, "trafficPolicy": p} for v, p in policies.items()],
        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM", "warmupDurationSecs": "9s"}},
    }
    clusters = {c.name: c for c in build_clusters(context(cfg("DestinationRule", "reviews", spec)), SIDECAR)}
    rr = clusters[f"outbound|9080|v1|{REVIEWS}"].round_robin_lb_config.slow_start_config
    assert rr.slow_start_window.seconds == 30 and rr.min_weight_percent.value == 10
    assert rr.aggression.default_value == 2
    lr = clusters[f"outbound|9080|v2|{REVIEWS}"]
    assert lr.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert lr.least_request_lb_config.slow_start_config.slow_start_window.seconds == 9
    assert clusters[f"outbound|9080||{REVIEWS}"].WhichOneof("lb_config") is None  # RANDOM: no slow start


def test_subset_endpoints() -> None:
    cla = build_load_assignment(context(DR), f"outbound|9080|v2|{REVIEWS}")
    addresses = [e.endpoint.address.socket_address.address for g in cla.endpoints for e in g.lb_endpoints]
    assert addresses == ["10.1.0.2"]
    all_eps = build_load_assignment(context(DR), f"outbound|9080||{REVIEWS}")
    assert sum(len(g.lb_endpoints) for g in all_eps.endpoints) == 3
    assert all(g.load_balancing_weight.value > 0 for g in all_eps.endpoints)


def test_sidecar_listeners_in_redirect_mode() -> None:
    listeners = {x.name: x for x in build_listeners(context(), SIDECAR)}
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_9080", "10.0.0.9_3306"} <= set(listeners)
    assert listeners["virtualOutbound"].address.socket_address.port_value == 15001
    assert listeners["virtualInbound"].address.socket_address.port_value == 15006
    assert listeners["0.0.0.0_9080"].bind_to_port.value is False


def test_egress_capture_mode_none_binds_localhost_on_a_captured_proxy() -> None:
    """Istio's: an explicit egress port with ``captureMode: NONE`` and no ``bind`` is a listener
    bound to 127.0.0.1 even when the proxy's traffic is captured by iptables."""
    port = {"number": 9080, "name": "http", "protocol": "HTTP"}
    sidecar = cfg("Sidecar", "default", {"egress": [{"port": port, "captureMode": "NONE", "hosts": ["./*"]}]})
    listeners = {x.name: x for x in build_listeners(context(sidecar), SIDECAR)}
    assert "127.0.0.1_9080" in listeners and "0.0.0.0_9080" not in listeners
    assert not listeners["127.0.0.1_9080"].HasField("bind_to_port")  # bound (Envoy's default)
    default = cfg("Sidecar", "default", {"egress": [{"port": port, "hosts": ["./*"]}]})
    unbound = {x.name: x for x in build_listeners(context(default), SIDECAR)}["0.0.0.0_9080"]
    assert unbound.bind_to_port.value is False


def test_virtual_inbound_matches_chains_by_port_and_never_hands_off() -> None:
    """Handing off by original destination would pass inbound traffic to 0.0.0.0_9080 (outbound)."""
    proxy = parse_proxy("sidecar~10.1.0.1~reviews-v1.default~default.svc.cluster.local", meta())
    listeners = {x.name: x for x in build_listeners(context(), proxy)}
    inbound = listeners["virtualInbound"]
    assert not inbound.HasField("use_original_dst")
    assert inbound.listener_filters[0].name == "envoy.filters.listener.original_dst"
    assert {c.filter_chain_match.destination_port.value for c in inbound.filter_chains} == {9080}
    assert listeners["virtualOutbound"].use_original_dst.value is True


def test_inbound_passthrough_connects_from_the_address_capture_lets_through() -> None:
    clusters = {c.name: c for c in build_clusters(context(), SIDECAR)}
    source = clusters["InboundPassthroughCluster"].upstream_bind_config.source_address
    assert (source.address, source.port_value) == ("127.0.0.6", 0)
    assert not clusters["PassthroughCluster"].HasField("upstream_bind_config")


def test_virtual_service_routes_carry_semantics() -> None:
    vs = cfg(
        "VirtualService",
        "reviews",
        {
            "hosts": ["reviews"],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                },
                {
                    "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 50}}},
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                    ],
                },
            ],
        },
    )
    rc = build_route(context(DR, vs), SIDECAR, "9080")
    vh = next(v for v in rc.virtual_hosts if v.name == f"{REVIEWS}:9080")
    # Istio 1.16+: the port in Host is ignored, so no "reviews:9080" domain is needed
    assert "reviews" in vh.domains and not any(":" in d for d in vh.domains)
    assert rc.ignore_port_in_host_matching
    first, second = vh.routes[0], vh.routes[1]
    assert first.match.headers[0].name == "end-user"
    assert first.route.cluster == f"outbound|9080|v2|{REVIEWS}"
    weights = {c.name: c.weight.value for c in second.route.weighted_clusters.clusters}
    assert weights == {f"outbound|9080|v1|{REVIEWS}": 90, f"outbound|9080|v2|{REVIEWS}": 10}
    fault = fault_pb2.HTTPFault()
    second.typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.abort.http_status == 418 and fault.abort.percentage.numerator == 500000
    assert first.metadata.filter_metadata["istio"].fields["config"].string_value == (
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
    )
    assert rc.virtual_hosts[-1].name == "allow_any"


def test_registry_only_and_egress_scoping() -> None:
    sidecar = cfg(
        "Sidecar",
        "default",
        {
            "egress": [{"hosts": ["./db.default.svc.cluster.local"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    )
    ctx = context(sidecar)
    names = {c.name for c in build_clusters(ctx, SIDECAR)}
    assert f"outbound|9080||{REVIEWS}" not in names
    assert "outbound|3306||db.default.svc.cluster.local" in names
    listeners = {x.name: x for x in build_listeners(ctx, SIDECAR)}
    assert listeners["virtualOutbound"].default_filter_chain.name == "virtualOutbound-blackhole"


def test_gateway_listener_and_routes() -> None:
    gw = cfg(
        "Gateway",
        "gw",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*.example.com"]}
            ],
        },
        ns="istio-system",
    )
    vs = cfg(
        "VirtualService",
        "site",
        {
            "hosts": ["www.example.com"],
            "gateways": ["istio-system/gw"],
            "http": [{"route": [{"destination": {"host": "reviews"}}]}],
        },
    )
    router = parse_proxy(
        "router~10.2.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
        meta(LABELS={"istio": "ingressgateway"}),
    )
    ctx = context(gw, vs)
    assert [x.name for x in build_listeners(ctx, router)] == ["0.0.0.0_8080"]
    rc = build_route(ctx, router, "http.8080")
    assert rc.virtual_hosts[0].domains[0] == "www.example.com"
    assert rc.virtual_hosts[0].routes[0].route.cluster == f"outbound|9080||{REVIEWS}"
    assert common.ClusterKey.parse(f"outbound|9080||{REVIEWS}") is not None
