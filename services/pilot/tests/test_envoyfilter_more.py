"""EnvoyFilter: route-class patches, filter chains and listener filters, proxy matches, Istio's
order, and results Envoy would reject (skipped and counted)."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators import envoyfilter
from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.envoyfilter.rules import listener_problems, proto_problems, route_problems
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.generators.xdstypes.cds import ClusterGenerator
from meshplane.pilot.generators.xdstypes.lds import ListenerGenerator
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context

from .test_envoyfilter import envoy_filter, hcm_merge, insert_lua, outbound
from .test_generators_more import REVIEWS, ROUTER, SIDECAR, cfg, ctx, proxy

HOST_VH = f"{REVIEWS}:9080"


def routes(c: PushContext, name: str = "9080", p: Proxy = SIDECAR) -> route_pb2.RouteConfiguration:
    return envoyfilter.patch_routes(c, p, build_route(c, p, name))


def vhost(rc: route_pb2.RouteConfiguration, name: str = HOST_VH) -> Any:
    return next(v for v in rc.virtual_hosts if v.name == name)


def rc_patch(
    apply_to: str, op: str, match: dict[str, Any] | None = None, value: Any = None
) -> dict[str, Any]:
    patch: dict[str, Any] = {"operation": op}
    if value is not None:
        patch["value"] = value
    return {
        "applyTo": apply_to,
        "match": {"context": "SIDECAR_OUTBOUND", "routeConfiguration": match or {}},
        "patch": patch,
    }


DIRECT = {"name": "teapot", "match": {"prefix": "/tea"}, "direct_response": {"status": 418}}


def test_route_configuration_merge_by_port_and_name() -> None:
    merge = rc_patch(
        "ROUTE_CONFIGURATION", "MERGE", {"portNumber": 9080}, {"max_direct_response_body_size_bytes": 77}
    )
    assert routes(ctx(envoy_filter("m", [merge]))).max_direct_response_body_size_bytes.value == 77
    other = rc_patch(
        "ROUTE_CONFIGURATION", "MERGE", {"portNumber": 9081}, {"max_direct_response_body_size_bytes": 77}
    )
    assert not routes(ctx(envoy_filter("m", [other]))).HasField("max_direct_response_body_size_bytes")
    named = rc_patch("ROUTE_CONFIGURATION", "MERGE", {"name": "9080"}, {"validate_clusters": True})
    assert routes(ctx(envoy_filter("m", [named]))).validate_clusters.value is True


def test_virtual_host_add_merge_remove_replace() -> None:
    plain = routes(ctx())
    extra = {"name": "extra", "domains": ["extra.example.com"], "routes": [DIRECT]}
    added = routes(ctx(envoy_filter("a", [rc_patch("VIRTUAL_HOST", "ADD", {"portNumber": 9080}, extra)])))
    assert [v.name for v in added.virtual_hosts] == [*(v.name for v in plain.virtual_hosts), "extra"]
    merged = routes(
        ctx(
            envoy_filter(
                "m", [rc_patch("VIRTUAL_HOST", "MERGE", {"vhost": {"name": HOST_VH}}, {"domains": ["alias"]})]
            )
        )
    )
    assert list(vhost(merged).domains) == [*vhost(plain).domains, "alias"]
    removed = routes(
        ctx(envoy_filter("r", [rc_patch("VIRTUAL_HOST", "REMOVE", {"vhost": {"domainName": "reviews"}})]))
    )
    assert HOST_VH not in [v.name for v in removed.virtual_hosts]
    replaced = routes(
        ctx(
            envoy_filter(
                "p",
                [
                    rc_patch(
                        "VIRTUAL_HOST", "REPLACE", {"vhost": {"name": HOST_VH}}, {**extra, "name": HOST_VH}
                    )
                ],
            )
        )
    )
    assert list(vhost(replaced).domains) == ["extra.example.com"]


def test_http_route_insert_merge_remove_relative_to_a_named_route() -> None:
    at_default = {"vhost": {"name": HOST_VH, "route": {"name": "default"}}}
    before = routes(ctx(envoy_filter("b", [rc_patch("HTTP_ROUTE", "INSERT_BEFORE", at_default, DIRECT)])))
    assert [r.name for r in vhost(before).routes] == ["teapot", "default"]
    after = routes(ctx(envoy_filter("b", [rc_patch("HTTP_ROUTE", "INSERT_AFTER", at_default, DIRECT)])))
    assert [r.name for r in vhost(after).routes] == ["default", "teapot"]
    missing = {"vhost": {"name": HOST_VH, "route": {"name": "nope"}}}
    first = routes(ctx(envoy_filter("f", [rc_patch("HTTP_ROUTE", "INSERT_FIRST", missing, DIRECT)])))
    assert [r.name for r in vhost(first).routes] == ["default"]  # FIRST only where a route matches
    timeout = {"route": {"timeout": "3s"}}
    merged = routes(ctx(envoy_filter("m", [rc_patch("HTTP_ROUTE", "MERGE", at_default, timeout)])))
    assert vhost(merged).routes[0].route.timeout.seconds == 3
    redirects = {"vhost": {"name": HOST_VH, "route": {"action": "REDIRECT"}}}
    untouched = routes(ctx(envoy_filter("m", [rc_patch("HTTP_ROUTE", "MERGE", redirects, timeout)])))
    assert vhost(untouched).routes[0].route.timeout.seconds == 0
    removed = routes(
        ctx(
            envoy_filter(
                "r",
                [
                    rc_patch("HTTP_ROUTE", "INSERT_BEFORE", at_default, DIRECT),
                    rc_patch("HTTP_ROUTE", "REMOVE", {"vhost": {"route": {"action": "DIRECT_RESPONSE"}}}),
                ],
            )
        )
    )
    assert [r.name for r in vhost(removed).routes] == ["default"]


def test_route_patches_follow_the_context_gateway_routes_and_inbound_inline_routes() -> None:
    server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    gw = cfg(
        "Gateway", "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}, ns="istio-system"
    )
    vs = cfg(
        "VirtualService",
        "vs",
        {
            "hosts": ["*"],
            "gateways": ["istio-system/gw"],
            "http": [{"route": [{"destination": {"host": REVIEWS}}]}],
        },
    )
    value = {"max_direct_response_body_size_bytes": 5}
    sidecar_only = rc_patch("ROUTE_CONFIGURATION", "MERGE", {"portNumber": 80}, value)
    gateway = {**sidecar_only, "match": {"context": "GATEWAY", "routeConfiguration": {"portNumber": 80}}}
    gw_route = routes(ctx(gw, vs, envoy_filter("s", [sidecar_only], ns="istio-system")), "http.80", ROUTER)
    assert not gw_route.HasField("max_direct_response_body_size_bytes")
    gw_route = routes(ctx(gw, vs, envoy_filter("g", [gateway], ns="istio-system")), "http.80", ROUTER)
    assert gw_route.max_direct_response_body_size_bytes.value == 5
    inbound = {
        **sidecar_only,
        "match": {"context": "SIDECAR_INBOUND", "routeConfiguration": {"portNumber": 9080}},
    }
    assert routes(ctx(envoy_filter("i", [inbound]))).HasField("max_direct_response_body_size_bytes") is False
    reviews = proxy("sidecar~10.0.0.5~reviews-1.default~default.svc.cluster.local", {"app": "reviews"})
    workload = Workload("reviews-1", "default", "10.0.0.5", {"app": "reviews"}, services=(REVIEWS,))
    services = {"r": Service(REVIEWS, "default", (Port("http", 9080, "HTTP"),))}
    c = build_push_context("1", {"e": envoy_filter("i", [inbound])}, services, {"w": workload})
    inline = []
    for chain in ListenerGenerator().own(c, reviews)[0].filter_chains:
        for flt in chain.filters:
            mgr = hcm_pb2.HttpConnectionManager()
            if flt.typed_config.Unpack(mgr) and mgr.HasField("route_config"):
                inline.append(
                    (mgr.route_config.name, mgr.route_config.max_direct_response_body_size_bytes.value)
                )
    assert ("inbound|9080||", 5) in inline


def _pm(version: str | None = None, **metadata: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if version is not None:
        out["proxyVersion"] = version
    if metadata:
        out["metadata"] = metadata
    return out


def versioned(version: str, cluster_id: str = "Kubernetes") -> Proxy:
    md = struct_pb2.Struct()
    md.update({"LABELS": {"app": "productpage"}, "ISTIO_VERSION": version, "CLUSTER_ID": cluster_id})
    return parse_proxy("sidecar~10.0.0.2~pp.default~default.svc.cluster.local", md)


def test_proxy_version_and_metadata_matches() -> None:
    def lua_for(p: Proxy, proxy_match: dict[str, Any]) -> bool:
        ef = insert_lua()
        patches = ef.spec.model_dump(by_alias=True, exclude_none=True, mode="json")["configPatches"]
        patches[0]["match"]["proxy"] = proxy_match
        listeners = ListenerGenerator().shared(ctx(envoy_filter("lua", patches)), p)
        return "envoy.filters.http.lua" in str(listeners)

    one_two = versioned("1.24.3")
    assert lua_for(one_two, _pm("^1\\.24.*"))
    assert not lua_for(one_two, _pm("^1\\.23.*"))
    assert not lua_for(versioned(""), _pm(".*"))  # no ISTIO_VERSION never matches a version regex
    assert lua_for(one_two, _pm(CLUSTER_ID="Kubernetes"))
    assert not lua_for(versioned("1.24.3", "east"), _pm(CLUSTER_ID="Kubernetes"))
    assert not lua_for(one_two, _pm("^1\\.24", CLUSTER_ID="east"))


def test_proxies_matched_differently_do_not_share_a_cached_part() -> None:
    ef = insert_lua()
    patches = ef.spec.model_dump(by_alias=True, exclude_none=True, mode="json")["configPatches"]
    patches[0]["match"]["proxy"] = _pm("^1\\.24")
    c = ctx(envoy_filter("lua", patches))
    new, old = versioned("1.24.0"), versioned("1.23.0")
    assert new.scope_key() == old.scope_key()
    assert envoyfilter.variant(c, new) != envoyfilter.variant(c, old)
    assert envoyfilter.variant(ctx(), new) == envoyfilter.variant(ctx(), old) == ()


def _timeout_patch(seconds: int) -> list[dict[str, Any]]:
    return [
        {
            "applyTo": "CLUSTER",
            "match": {"cluster": {"service": REVIEWS}},
            "patch": {"operation": "MERGE", "value": {"connect_timeout": f"{seconds}s"}},
        }
    ]


def _timeout(*configs: Config) -> int:
    out = ClusterGenerator().shared(ctx(*configs), SIDECAR)
    return next(c for c in out if c.name == f"outbound|9080||{REVIEWS}").connect_timeout.seconds


def test_order_priority_then_root_namespace_then_creation_time_then_name() -> None:
    def ef(name: str, seconds: int, ns: str = "default", priority: int = 0, created: float = 0.0) -> Config:
        c = envoy_filter(name, _timeout_patch(seconds), ns=ns, priority=priority)
        return Config(c.kind, c.group, c.version, c.namespace, c.name, c.spec, "1", created)

    # the last patch applied wins the MERGE
    assert _timeout(ef("a", 1), ef("b", 2)) == 2  # by name
    assert _timeout(ef("a", 1, created=20.0), ef("b", 2, created=10.0)) == 1  # creation time first
    assert _timeout(ef("a", 1), ef("z", 2, ns="istio-system")) == 1  # root namespace runs first
    assert _timeout(ef("a", 1, priority=-1), ef("z", 2, ns="istio-system")) == 2  # priority dominates


def test_filter_chain_and_listener_filter_patches() -> None:
    chain_match = {"context": "SIDECAR_OUTBOUND", "listener": {"portNumber": 9080}}
    merge = {
        "applyTo": "FILTER_CHAIN",
        "match": chain_match,
        "patch": {"operation": "MERGE", "value": {"transport_socket_connect_timeout": "4s"}},
    }
    lis = next(x for x in outbound(ctx(envoy_filter("fc", [merge]))) if x.name == "0.0.0.0_9080")
    assert all(c.transport_socket_connect_timeout.seconds == 4 for c in lis.filter_chains)
    remove = {"applyTo": "FILTER_CHAIN", "match": chain_match, "patch": {"operation": "REMOVE"}}
    lis = next(x for x in outbound(ctx(envoy_filter("fc", [remove]))) if x.name == "0.0.0.0_9080")
    assert len(lis.filter_chains) == 0
    inspector = {
        "name": "envoy.filters.listener.tls_inspector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
        },
    }
    add = {
        "applyTo": "LISTENER_FILTER",
        "match": chain_match,
        "patch": {"operation": "INSERT_FIRST", "value": inspector},
    }
    lis = next(x for x in outbound(ctx(envoy_filter("lf", [add]))) if x.name == "0.0.0.0_9080")
    assert lis.listener_filters[0].name == "envoy.filters.listener.tls_inspector"
    gone = {
        "applyTo": "LISTENER_FILTER",
        "match": {"listener": {"portNumber": 9080, "listenerFilter": "envoy.filters.listener.tls_inspector"}},
        "patch": {"operation": "REMOVE"},
    }
    lis = next(x for x in outbound(ctx(envoy_filter("lf", [add, gone]))) if x.name == "0.0.0.0_9080")
    assert "tls_inspector" not in str(lis.listener_filters)


def test_results_envoy_would_reject_are_skipped_and_counted_the_rest_applies() -> None:
    zero = {
        "applyTo": "CLUSTER",
        "match": {"cluster": {"service": REVIEWS}},
        "patch": {"operation": "MERGE", "value": {"connect_timeout": "-1s"}},  # must be > 0
    }
    dup_domain = rc_patch("VIRTUAL_HOST", "MERGE", {"vhost": {"name": HOST_VH}}, {"domains": ["*"]})
    no_domains = rc_patch("VIRTUAL_HOST", "ADD", {}, {"name": "empty"})  # domains: min_items 1
    extra = rc_patch("VIRTUAL_HOST", "ADD", {}, {"name": "extra", "domains": ["extra"]})
    before = envoyfilter.STATUS.error_count("default/bad")
    bad = envoy_filter("bad", [zero, *_timeout_patch(9), dup_domain, no_domains, extra])
    assert _timeout(bad) == 9  # the good patches still apply
    patched = routes(ctx(bad))
    assert list(vhost(patched).domains) == list(vhost(routes(ctx())).domains)
    assert [v.name for v in patched.virtual_hosts][-1] == "extra"
    assert "empty" not in [v.name for v in patched.virtual_hosts]
    assert envoyfilter.STATUS.error_count("default/bad") == before + 3
    _timeout(envoy_filter("good", _timeout_patch(3)))
    assert ("default/good", "cluster", "applied", 1.0) in envoyfilter.STATUS.samples()
    assert ("default/bad", "cluster", "error") in [row[:3] for row in envoyfilter.STATUS.samples()]


def test_what_pilot_generates_passes_envoys_rules() -> None:
    """The checker must not turn Pilot's own config into errors: nothing found in it."""
    server = {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"]}
    server["tls"] = {"mode": "SIMPLE", "credentialName": "cert"}
    gw = cfg(
        "Gateway", "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}, ns="istio-system"
    )
    c = ctx(gw)
    for p in (SIDECAR, ROUTER):
        listeners: list[listener_pb2.Listener] = build_listeners(c, p)
        assert [x for lis in listeners for x in listener_problems(lis)] == []
        assert [x for cl in build_clusters(c, p) for x in proto_problems(cl)] == []
    assert route_problems(build_route(c, SIDECAR, "9080")) == []
    assert route_problems(build_route(c, ROUTER, "https.443.https.gw.istio-system")) == []


def test_inbound_clusters_match_the_proxys_services_and_inbound_adds_run_in_the_inbound_pass() -> None:
    reviews = proxy("sidecar~10.0.0.5~reviews-1.default~default.svc.cluster.local", {"app": "reviews"})
    workload = Workload("reviews-1", "default", "10.0.0.5", {"app": "reviews"}, services=(REVIEWS,))
    services = {"r": Service(REVIEWS, "default", (Port("http", 9080, "HTTP"),))}
    extra = {"name": "extra", "type": "STATIC", "connect_timeout": "1s"}
    patches = [
        {
            "applyTo": "CLUSTER",
            "match": {"context": "SIDECAR_INBOUND", "cluster": {"service": REVIEWS, "portNumber": 9080}},
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "8s"}},
        },
        {
            "applyTo": "CLUSTER",
            "match": {"context": "SIDECAR_INBOUND"},
            "patch": {"operation": "ADD", "value": extra},
        },
        {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {**extra, "name": "any"}}},
    ]
    c = build_push_context("1", {"e": envoy_filter("in", patches)}, services, {"w": workload})
    gen = ClusterGenerator()
    own = {x.name: x for x in gen.own(c, reviews)}
    shared = {x.name for x in gen.shared(c, reviews)}
    assert own["inbound|9080||"].connect_timeout.seconds == 8
    assert "extra" in own and "extra" not in shared  # SIDECAR_INBOUND: added in the inbound pass
    assert "any" in shared and "any" not in own  # ANY: added once, in the outbound pass


def test_merging_a_typed_config_of_another_type_is_skipped_and_counted() -> None:
    tcp = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
    wrong = hcm_merge({"@type": tcp, "stat_prefix": "x"})
    before = envoyfilter.STATUS.error_count("default/wrong")
    plain = outbound(ctx())
    assert outbound(ctx(envoy_filter("wrong", [wrong]))) == plain
    assert envoyfilter.STATUS.error_count("default/wrong") == before + 1
