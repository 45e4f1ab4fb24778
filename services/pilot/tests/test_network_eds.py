"""Network-aware EDS: endpoints carry their network and cluster; other networks are reached
through their gateways (Istio's EndpointsByNetworkFilter)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import yaml
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators import common
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.network import NetworkView, proxy_view
from meshplane.pilot.ingest.watcher import State, Watcher
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.config import Config, Port, Service, Workload, workload_from_bus
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.pilot.xds.resources import ResourceCache
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.meshconfig import parse_mesh_config

NS = "default"
WEB = "web.default.svc.cluster.local"
WEB_CLUSTER = f"outbound|80||{WEB}"
WEB_SNI = f"outbound_.80_._.{WEB}"
MTLS = {"security.istio.io/tlsMode": "istio", "app": "web"}
GW_A, GW_B = "192.0.2.1", "192.0.2.2"


def _networks(**more: Any) -> dict[str, Any]:
    nets: dict[str, Any] = {
        "net-a": {"endpoints": [{"fromCidr": "10.1.0.0/16"}], "gateways": [{"address": GW_A, "port": 15443}]},
        "net-b": {
            "endpoints": [{"fromRegistry": "cluster2"}],
            "gateways": [{"address": GW_B, "port": 15443}],
        },
    }
    nets.update(more)
    return {"meshNetworks": {"networks": nets}}


def _wl(
    name: str, address: str, network: str, locality: str, labels: dict[str, str] = MTLS, **kw: Any
) -> Workload:
    return Workload(name, NS, address, dict(labels), "web", locality, services=(WEB,), network=network, **kw)


WORKLOADS = [
    _wl("a1", "10.1.0.1", "net-a", "ra/za"),
    _wl("a2", "10.1.0.2", "net-a", "ra/za"),
    _wl("b1", "10.2.0.1", "net-b", "rb/zb"),
    _wl("b2", "10.2.0.2", "net-b", "rb/zb"),
    _wl("b3", "10.2.0.3", "net-b", "rb/zb"),
    _wl("b-plain", "10.2.0.9", "net-b", "rb/zb", {"app": "web"}),  # no sidecar: no mTLS
    _wl("c1", "10.3.0.1", "net-c", "rc/zc"),  # a network without a gateway
]


def _ctx(
    mesh: dict[str, Any] | None = None, workloads: list[Workload] | None = None, *configs: Config
) -> PushContext:
    web = Service(WEB, NS, (Port("http", 80, "HTTP"),))
    wls = WORKLOADS if workloads is None else workloads
    return build_push_context(
        "1",
        {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs},
        {WEB: web},
        {w.name: w for w in wls},
        mesh=parse_mesh_config(yaml.safe_dump(mesh or _networks()), "mesh"),
    )


def _eps(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[str, tuple[str, int, bool]]:
    """address:port -> (locality region, weight, tlsMode istio)."""
    out = {}
    for group in cla.endpoints:
        for lb in group.lb_endpoints:
            sock = lb.endpoint.address.socket_address
            md = lb.metadata.filter_metadata["envoy.transport_socket_match"].fields.get("tlsMode")
            out[f"{sock.address}:{sock.port_value}"] = (
                group.locality.region,
                lb.load_balancing_weight.value,
                md is not None and md.string_value == "istio",
            )
    return out


def _sidecar(network: str = "", ip: str = "10.9.0.1", **meta: str) -> Proxy:
    md = struct_pb2.Struct()
    md.update({"NETWORK": network, **meta} if network else meta)
    return parse_proxy(f"sidecar~{ip}~c.default~default.svc.cluster.local", md)


def _router(network: str, **meta: str) -> Proxy:
    md = struct_pb2.Struct()
    md.update({"NETWORK": network, "LABELS": {"istio": "eastwestgateway"}, **meta})
    return parse_proxy("router~10.2.0.100~eastwest.istio-system~istio-system.svc.cluster.local", md)


def test_endpoints_carry_the_workload_network_else_its_label() -> None:
    def instance(name: str, address: str, network: str = "", **labels: str) -> registry_pb2.WorkloadInstance:
        return registry_pb2.WorkloadInstance(
            name=name, namespace=NS, address=address, network=network, labels=labels, services=[WEB]
        )

    web = Service(WEB, NS, (Port("http", 80, "HTTP"),))
    remote = instance("a", "10.1.0.1", "net-a", **{"topology.istio.io/network": "no"})
    remote.cluster_id = "cluster2"
    workloads = {
        "a": workload_from_bus(remote),
        "b": workload_from_bus(instance("b", "10.2.0.1", **{"topology.istio.io/network": "net-b"})),
        "c": workload_from_bus(instance("c", "10.3.0.1")),
    }
    ctx = build_push_context("1", {}, {WEB: web}, workloads)
    got = {e.address: (e.network, e.cluster_id) for e in ctx.endpoints(WEB, NS, 80)}
    assert got == {"10.1.0.1": ("net-a", "cluster2"), "10.2.0.1": ("net-b", ""), "10.3.0.1": ("", "")}


def test_other_network_is_one_gateway_endpoint_weighted_by_what_it_replaces() -> None:
    cla = build_load_assignment(_ctx(), WEB_CLUSTER, view=NetworkView("net-a"))
    assert _eps(cla) == {
        "10.1.0.1:80": ("ra", 1, True),
        "10.1.0.2:80": ("ra", 1, True),
        f"{GW_B}:15443": ("rb", 3, True),  # b1..b3; b-plain has no sidecar, c1 no gateway
    }
    cla = build_load_assignment(_ctx(), WEB_CLUSTER, view=NetworkView("net-b"))
    assert _eps(cla) == {
        f"{GW_A}:15443": ("ra", 2, True),
        "10.2.0.1:80": ("rb", 1, True),
        "10.2.0.2:80": ("rb", 1, True),
        "10.2.0.3:80": ("rb", 1, True),
        "10.2.0.9:80": ("rb", 1, False),  # same network: direct, plaintext
    }


def test_no_network_on_either_side_means_the_same_network() -> None:
    everything = {f"{w.address}:80" for w in WORKLOADS}
    assert set(_eps(build_load_assignment(_ctx(), WEB_CLUSTER, view=NetworkView("")))) == everything
    assert set(_eps(build_load_assignment(_ctx(), WEB_CLUSTER))) == everything  # no view: as before
    unlabelled = [replace(w, network="") for w in WORKLOADS]
    ctx = _ctx({}, unlabelled)
    assert set(_eps(build_load_assignment(ctx, WEB_CLUSTER, view=NetworkView("net-a")))) == everything


def test_network_from_mesh_networks_cidr_and_registry_and_for_the_proxy() -> None:
    unlabelled = [
        _wl("a1", "10.1.0.1", "", "ra"),  # fromCidr 10.1.0.0/16 -> net-a
        _wl("b1", "10.7.0.1", "", "rb", cluster_id="cluster2"),  # fromRegistry cluster2 -> net-b
        _wl("x1", "10.8.0.1", "", "rx"),  # neither: no network, sent as is
    ]
    ctx = _ctx(None, unlabelled)
    proxy = _sidecar(ip="10.1.0.50")  # no NETWORK metadata: fromCidr gives net-a
    assert proxy_view(ctx, proxy) == NetworkView("net-a")
    cla = build_load_assignment(ctx, WEB_CLUSTER, view=proxy_view(ctx, proxy))
    assert set(_eps(cla)) == {"10.1.0.1:80", f"{GW_B}:15443", "10.8.0.1:80"}


def test_weights_split_exactly_over_several_gateways() -> None:
    two = {
        "endpoints": [],
        "gateways": [{"address": GW_B, "port": 15443}, {"address": "192.0.2.3", "port": 15443}],
    }
    cla = build_load_assignment(_ctx(_networks(**{"net-b": two})), WEB_CLUSTER, view=NetworkView("net-a"))
    # scale factor 2 (two gateways for net-b): 2 local endpoints of 2, 3 remote split as 3 + 3
    assert _eps(cla) == {
        "10.1.0.1:80": ("ra", 2, True),
        "10.1.0.2:80": ("ra", 2, True),
        f"{GW_B}:15443": ("rb", 3, True),
        "192.0.2.3:15443": ("rb", 3, True),
    }


def test_gateway_endpoints_keep_each_remote_locality() -> None:
    wls = [*WORKLOADS, _wl("b4", "10.2.0.4", "net-b", "rb2/zb")]
    cla = build_load_assignment(_ctx(None, wls), WEB_CLUSTER, view=NetworkView("net-a"))
    groups = {
        g.locality.region: [lb.load_balancing_weight.value for lb in g.lb_endpoints] for g in cla.endpoints
    }
    assert groups == {"ra": [1, 1], "rb": [3], "rb2": [1]}


def test_registry_service_gateway_uses_the_gateway_workloads() -> None:
    ewgw = Service(
        "istio-eastwestgateway.istio-system.svc.cluster.local", "istio-system", (Port("tls", 15443, "TLS"),)
    )
    gw_pod = Workload(
        "ewgw-1", "istio-system", "172.16.0.9", {"istio": "eastwestgateway"}, services=(ewgw.hostname,)
    )
    nets = _networks(**{"net-b": {"gateways": [{"registryServiceName": ewgw.hostname, "port": 15443}]}})
    ctx = build_push_context(
        "1",
        {},
        {WEB: Service(WEB, NS, (Port("http", 80, "HTTP"),)), ewgw.hostname: ewgw},
        {w.name: w for w in [*WORKLOADS, gw_pod]},
        mesh=parse_mesh_config(yaml.safe_dump(nets), "mesh"),
    )
    assert _eps(build_load_assignment(ctx, WEB_CLUSTER, view=NetworkView("net-a")))["172.16.0.9:15443"] == (
        "rb",
        3,
        True,
    )
    assert ctx.mesh.mesh_networks.gateway_services == {ewgw.hostname}


EASTWEST = Config.parse(
    "Gateway",
    "networking.istio.io",
    "v1",
    "istio-system",
    "cross-network-gateway",
    {
        "selector": {"istio": "eastwestgateway"},
        "servers": [
            {
                "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": ["*.local"],
            }
        ],
    },
)


def test_east_west_gateway_sees_only_its_own_networks_mtls_endpoints() -> None:
    ctx = _ctx(None, None, EASTWEST)
    view = proxy_view(ctx, _router("net-b"))
    assert view == NetworkView("net-b", frozenset({"net-b"}))
    # its SNI-DNAT cluster: only net-b's endpoints that accept mTLS, never net-a's gateway
    assert set(_eps(build_load_assignment(ctx, WEB_SNI, view=view))) == {
        "10.2.0.1:80",
        "10.2.0.2:80",
        "10.2.0.3:80",
    }
    # REQUESTED_NETWORK_VIEW (Istio's gateway metadata) names the networks itself: net-a's own
    # endpoints are left out, net-b's come through its gateway, net-c has none (dropped)
    other = proxy_view(ctx, _sidecar("net-a", REQUESTED_NETWORK_VIEW="net-b,net-c"))
    assert set(_eps(build_load_assignment(ctx, WEB_CLUSTER, view=other))) == {f"{GW_B}:15443"}


def test_locality_failover_ranks_the_gateway_like_any_remote_locality() -> None:
    dr = Config.parse(
        "DestinationRule",
        "networking.istio.io",
        "v1",
        NS,
        "web",
        {"host": WEB, "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1}}},
    )
    ctx = _ctx(None, None, dr)
    proxy = replace(_sidecar("net-a"), locality="ra/za")
    cla = _cla(ResourceCache(), ctx, proxy)
    prios = {
        lb.endpoint.address.socket_address.address: g.priority for g in cla.endpoints for lb in g.lb_endpoints
    }
    assert prios == {"10.1.0.1": 0, "10.1.0.2": 0, GW_B: 1}


def _cla(cache: ResourceCache, ctx: PushContext, proxy: Proxy) -> endpoint_pb2.ClusterLoadAssignment:
    (part,) = cache.parts(ctx, proxy, common.ENDPOINT, frozenset({WEB_CLUSTER}))
    cla = endpoint_pb2.ClusterLoadAssignment()
    part.items[WEB_CLUSTER].any.Unpack(cla)
    return cla


def test_eds_cache_is_per_network_and_shared_within_one() -> None:
    ctx, cache = _ctx(), ResourceCache()
    a1 = cache.parts(ctx, _sidecar("net-a"), common.ENDPOINT, frozenset({WEB_CLUSTER}))[0]
    a2 = cache.parts(ctx, _sidecar("net-a", ip="10.9.0.2"), common.ENDPOINT, frozenset({WEB_CLUSTER}))[0]
    b = cache.parts(ctx, _sidecar("net-b"), common.ENDPOINT, frozenset({WEB_CLUSTER}))[0]
    assert a1.items[WEB_CLUSTER] is a2.items[WEB_CLUSTER]
    assert a1.items[WEB_CLUSTER].version != b.items[WEB_CLUSTER].version
    assert f"{GW_B}:15443" in _eps(_cla(cache, ctx, _sidecar("net-a")))
    assert f"{GW_A}:15443" in _eps(_cla(cache, ctx, _sidecar("net-b")))


def test_clear_eds_also_drops_sni_dnat_assignments_of_the_host() -> None:
    ctx, cache = _ctx(None, None, EASTWEST), ResourceCache()
    router = _router("net-b")
    cache.parts(ctx, router, common.ENDPOINT, frozenset({WEB_SNI}))
    assert any(k[0] == WEB_SNI for k in cache.endpoint_resources)
    cache.clear_eds(frozenset({WEB}))
    assert not any(k[0] == WEB_SNI for k in cache.endpoint_resources)


def test_a_registry_service_gateway_moving_is_a_full_push() -> None:
    gw_host = "istio-eastwestgateway.istio-system.svc.cluster.local"
    nets = _networks(**{"net-b": {"gateways": [{"registryServiceName": gw_host, "port": 15443}]}})
    state = State(mesh=parse_mesh_config(yaml.safe_dump(nets), "mesh"))
    watcher = Watcher(cast("Buckets", None), state, Metrics())
    gw_pod = registry_pb2.WorkloadInstance(name="ewgw-1", namespace="istio-system", address="172.16.0.9")
    gw_pod.services.append(gw_host)
    assert watcher._on_workload("istio-system/ewgw-1", gw_pod).full
    web_pod = registry_pb2.WorkloadInstance(name="b1", namespace=NS, address="10.2.0.1", services=[WEB])
    push = watcher._on_workload("default/b1", web_pod)
    assert not push.full and push.eds_hosts == {WEB}


def test_service_entry_endpoints_carry_their_network() -> None:
    se = Config.parse(
        "ServiceEntry",
        "networking.istio.io",
        "v1",
        NS,
        "db",
        {
            "hosts": ["db.example.internal"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
            "endpoints": [
                {"address": "10.2.5.5", "network": "net-b", "labels": MTLS},
                {"address": "10.1.5.5", "labels": MTLS},
            ],
        },
    )
    ctx = _ctx(None, [], se)
    assert {e.address: e.network for e in ctx.endpoints("db.example.internal", NS, 5432)} == {
        "10.2.5.5": "net-b",
        "10.1.5.5": "",
    }
    cla = build_load_assignment(ctx, "outbound|5432||db.example.internal", view=NetworkView("net-a"))
    assert set(_eps(cla)) == {"10.1.5.5:5432", f"{GW_B}:15443"}
