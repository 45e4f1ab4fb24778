"""EnvoyFilter patches change the generated listeners and clusters as Istio's do."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshplane.pilot.generators import envoyfilter
from meshplane.pilot.generators.envoyfilter import cluster, ops
from meshplane.pilot.generators.xdstypes.cds import ClusterGenerator
from meshplane.pilot.generators.xdstypes.lds import ListenerGenerator
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.config.models.envoy_filter import ApplyTo, EnvoyConfigObjectPatch, Operation

from .test_generators_more import REVIEWS, ROUTER, SIDECAR, cfg, ctx, proxy

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
HCM = "envoy.filters.network.http_connection_manager"
LUA = {
    "name": "envoy.filters.http.lua",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": "function envoy_on_response(h) end"},
    },
}


def envoy_filter(name: str, patches: list[dict[str, Any]], ns: str = "default", **spec: Any) -> Config:
    return Config.parse(
        "EnvoyFilter", "networking.istio.io", "v1alpha3", ns, name, {"configPatches": patches, **spec}
    )


OTHER_NS = proxy("sidecar~10.0.0.3~x.other~other.svc.cluster.local", {"app": "productpage"})


def http_filters(listeners: list[listener_pb2.Listener], name: str) -> list[list[str]]:
    """The HTTP filter names of every HCM in listener ``name``."""
    out = []
    lis = next(x for x in listeners if x.name == name)
    for chain in lis.filter_chains:
        for flt in chain.filters:
            if flt.name == HCM:
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                out.append([f.name for f in hcm.http_filters])
    return out


def outbound(c: PushContext, p: Proxy = SIDECAR) -> list[listener_pb2.Listener]:
    return ListenerGenerator().shared(c, p)


def insert_lua(
    op: str = "INSERT_BEFORE", context: str = "SIDECAR_OUTBOUND", port: int | None = None, **spec: Any
) -> Config:
    match: dict[str, Any] = {
        "context": context,
        "listener": {
            "filterChain": {"filter": {"name": HCM, "subFilter": {"name": "envoy.filters.http.router"}}}
        },
    }
    if port is not None:
        match["listener"]["portNumber"] = port
    return envoy_filter(
        "lua", [{"applyTo": "HTTP_FILTER", "match": match, "patch": {"operation": op, "value": LUA}}], **spec
    )


def test_lua_inserted_before_router_in_outbound_http_listeners_only() -> None:
    plain = http_filters(outbound(ctx()), "0.0.0.0_9080")
    patched = http_filters(outbound(ctx(insert_lua())), "0.0.0.0_9080")
    assert plain and all(f[-1] == "envoy.filters.http.router" for f in plain)
    assert patched == [[*f[:-1], "envoy.filters.http.lua", "envoy.filters.http.router"] for f in plain]
    # SIDECAR_INBOUND context leaves outbound listeners alone
    assert http_filters(outbound(ctx(insert_lua(context="SIDECAR_INBOUND"))), "0.0.0.0_9080") == plain


def test_selection_by_namespace_root_and_selector() -> None:
    plain = http_filters(outbound(ctx(), OTHER_NS), "0.0.0.0_9080")
    assert http_filters(outbound(ctx(insert_lua()), OTHER_NS), "0.0.0.0_9080") == plain
    root = insert_lua(ns="istio-system")
    assert "envoy.filters.http.lua" in http_filters(outbound(ctx(root), OTHER_NS), "0.0.0.0_9080")[0]
    miss = insert_lua(workloadSelector={"labels": {"app": "reviews"}})
    assert http_filters(outbound(ctx(miss)), "0.0.0.0_9080") == http_filters(outbound(ctx()), "0.0.0.0_9080")
    hit = insert_lua(workloadSelector={"labels": {"app": "productpage"}})
    assert "envoy.filters.http.lua" in http_filters(outbound(ctx(hit)), "0.0.0.0_9080")[0]


def test_insert_first_remove_and_add_after_router_is_skipped_and_counted() -> None:
    first = http_filters(outbound(ctx(insert_lua("INSERT_FIRST"))), "0.0.0.0_9080")[0]
    assert first[0] == "envoy.filters.http.lua"
    before = envoyfilter.STATUS.error_count("default/lua")
    added = outbound(ctx(insert_lua("ADD")))  # after the router: Envoy would reject it
    assert http_filters(added, "0.0.0.0_9080") == http_filters(outbound(ctx()), "0.0.0.0_9080")
    assert envoyfilter.STATUS.error_count("default/lua") > before
    remove = envoy_filter(
        "rm",
        [
            {
                "applyTo": "HTTP_FILTER",
                "match": {
                    "listener": {
                        "filterChain": {
                            "filter": {"name": HCM, "subFilter": {"name": "envoy.filters.http.lua"}}
                        }
                    }
                },
                "patch": {"operation": "REMOVE"},
            }
        ],
        priority=10,
    )
    assert http_filters(outbound(ctx(insert_lua(), remove)), "0.0.0.0_9080") == http_filters(
        outbound(ctx()), "0.0.0.0_9080"
    )


def hcm_merge(typed_config: dict[str, Any]) -> dict[str, Any]:
    """A NETWORK_FILTER MERGE of ``typed_config`` into the HCM of the port 9080 listener."""
    return {
        "applyTo": "NETWORK_FILTER",
        "match": {"listener": {"portNumber": 9080, "filterChain": {"filter": {"name": HCM}}}},
        "patch": {"operation": "MERGE", "value": {"typed_config": typed_config}},
    }


def test_network_filter_merge_sets_hcm_settings() -> None:
    merge = envoy_filter("hcm", [hcm_merge({"@type": HCM_TYPE, "server_name": "patched"})])
    lis = next(x for x in outbound(ctx(merge)) if x.name == "0.0.0.0_9080")
    hcm = hcm_pb2.HttpConnectionManager()
    next(f for c in lis.filter_chains for f in c.filters if f.name == HCM).typed_config.Unpack(hcm)
    assert hcm.server_name == "patched"
    assert hcm.http_filters[-1].name == "envoy.filters.http.router"  # the rest is kept


def clusters(c: PushContext) -> dict[str, cluster_pb2.Cluster]:
    gen = ClusterGenerator()
    return {x.name: x for x in [*gen.shared(c, SIDECAR), *gen.own(c, SIDECAR)]}


def test_cluster_merge_by_service_and_port_and_add() -> None:
    name = f"outbound|9080||{REVIEWS}"
    patches = [
        {
            "applyTo": "CLUSTER",
            "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"service": REVIEWS, "portNumber": 9080}},
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "7s"}},
        },
        {
            "applyTo": "CLUSTER",
            "patch": {
                "operation": "ADD",
                "value": {"name": "extra", "type": "STATIC", "connect_timeout": "1s"},
            },
        },
    ]
    plain, patched = clusters(ctx()), clusters(ctx(envoy_filter("c", patches)))
    assert plain[name].connect_timeout.seconds != 7
    assert patched[name].connect_timeout.seconds == 7
    assert patched[name].type == plain[name].type
    assert "extra" in patched and "extra" not in plain
    assert [n for n in patched if n != "extra"] == list(plain)


def test_bad_value_is_skipped_logged_and_counted() -> None:
    bad = envoy_filter(
        "bad",
        [{"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {"connect_timeout": "soon"}}}],
    )
    before = envoyfilter.STATUS.error_count("default/bad")
    assert clusters(ctx(bad)) == clusters(ctx())
    assert envoyfilter.STATUS.error_count("default/bad") > before


def test_skipped_patches_are_exported_as_a_pilot_metric() -> None:
    bad = envoy_filter(
        "bad-metric",
        [{"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {"connect_timeout": "soon"}}}],
    )
    registry = Metrics().registry
    labels = {"name": "default/bad-metric", "patch": "cluster", "result": "error"}
    before = registry.get_sample_value("pilot_envoy_filter_status", labels)
    clusters(ctx(bad))
    after = registry.get_sample_value("pilot_envoy_filter_status", labels)
    assert (before or 0) < (after or 0)


def test_inbound_context_patches_the_virtual_inbound_chains_of_the_matched_port() -> None:
    reviews = proxy("sidecar~10.0.0.5~reviews-1.default~default.svc.cluster.local", {"app": "reviews"})
    workload = Workload("reviews-1", "default", "10.0.0.5", {"app": "reviews"}, services=(REVIEWS,))
    services = {"r": Service(REVIEWS, "default", (Port("http", 9080, "HTTP"),))}

    def inbound(*configs: Config) -> list[listener_pb2.Listener]:
        c = build_push_context("1", {f"{x.kind}/{x.name}": x for x in configs}, services, {"w": workload})
        return ListenerGenerator().own(c, reviews)

    def chains_with_lua(listeners: list[listener_pb2.Listener]) -> set[int]:
        out = set()
        for chain in listeners[0].filter_chains:
            for flt in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                names = [f.name for f in hcm.http_filters] if flt.typed_config.Unpack(hcm) else []
                if flt.name == HCM and "envoy.filters.http.lua" in names:
                    out.add(chain.filter_chain_match.destination_port.value)
        return out

    assert [x.name for x in inbound()] == ["virtualInbound"]
    assert chains_with_lua(inbound()) == set()
    assert chains_with_lua(inbound(insert_lua(context="SIDECAR_INBOUND", port=9080))) == {9080}
    assert chains_with_lua(inbound(insert_lua(context="SIDECAR_INBOUND", port=9081))) == set()
    assert chains_with_lua(inbound(insert_lua())) == set()  # SIDECAR_OUTBOUND only


def test_gateway_context_patches_gateway_listeners_only() -> None:
    server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    gw = cfg(
        "Gateway", "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}, ns="istio-system"
    )

    def gateway(*configs: Config) -> list[list[str]]:
        listeners = ListenerGenerator().shared(ctx(gw, *configs), ROUTER)
        return [f for x in listeners for f in http_filters(listeners, x.name)]

    plain = gateway()
    assert plain and all("envoy.filters.http.lua" not in f for f in plain)
    root = {"ns": "istio-system"}
    assert gateway(insert_lua(**root)) == plain  # SIDECAR_OUTBOUND does not apply to a gateway
    patched = gateway(insert_lua(context="GATEWAY", **root))
    assert patched == [[*f[:-1], "envoy.filters.http.lua", f[-1]] for f in plain]
    assert gateway(insert_lua(context="ANY", **root)) == patched


def test_a_patch_that_raises_is_undone_logged_and_counted(caplog: Any) -> None:
    patch = envoyfilter.Compiled(
        "default/boom", EnvoyConfigObjectPatch(), ApplyTo.CLUSTER, Operation.MERGE, None
    )
    original = [cluster_pb2.Cluster(name="a", connect_timeout={"seconds": 1})]

    def half_then_raise(p: Any, out: list[cluster_pb2.Cluster]) -> list[cluster_pb2.Cluster]:
        out[0].connect_timeout.seconds = 9
        raise ValueError("bad patch")

    before = envoyfilter.STATUS.error_count("default/boom")
    result = ops.run("1", [patch], [ops.copy(c) for c in original], half_then_raise, cluster.problems)
    assert result == original
    assert envoyfilter.STATUS.error_count("default/boom") == before + 1
    assert "default/boom" in caplog.text and "bad patch" in caplog.text
