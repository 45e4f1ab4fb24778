"""Locality load balancing: priorities and weights per proxy locality, node locality parsing, and
the EDS cache keeping one CLA per (cluster, proxy locality) only for locality-LB clusters."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from meshplane.pilot.generators import common
from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.locality import apply_locality, locality_matches, locality_setting
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import locality_text, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.pilot.xds.resources import ResourceCache
from meshplane.shared.config.models import LocalityLoadBalancerSetting as Setting
from meshplane.shared.meshconfig import parse_mesh_config

NS = "default"
WEB = "web.default.svc.cluster.local"
API = "api.default.svc.cluster.local"
WEB_CLUSTER = f"outbound|80||{WEB}"
API_CLUSTER = f"outbound|80||{API}"
LOCALITIES = ("r1/z1/s1", "r1/z1/s2", "r1/z2/s1", "r2/z1/s1", "r3/z1/s1")
OUTLIER = {"consecutive5xxErrors": 1}


def _cla(*localities: str, weight: int = 1) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="c")
    for loc in localities:
        region, zone, sub = (loc.split("/") + ["", ""])[:3]
        group = cla.endpoints.add(locality=base_pb2.Locality(region=region, zone=zone, sub_zone=sub))
        group.load_balancing_weight.value = weight
        group.lb_endpoints.add()
    return cla


def _priorities(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[str, int]:
    return {
        locality_text(g.locality.region, g.locality.zone, g.locality.sub_zone): g.priority
        for g in cla.endpoints
    }


def _weights(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[str, int]:
    return {
        locality_text(g.locality.region, g.locality.zone, g.locality.sub_zone): g.load_balancing_weight.value
        for g in cla.endpoints
    }


def test_failover_priorities_by_shared_locality() -> None:
    cla = _cla(*LOCALITIES)
    apply_locality(cla, "r1/z1/s1", Setting())
    assert _priorities(cla) == {"r1/z1/s1": 0, "r1/z1/s2": 1, "r1/z2/s1": 2, "r2/z1/s1": 3, "r3/z1/s1": 3}


def test_failover_priorities_are_squashed_to_consecutive() -> None:
    cla = _cla("r1/z2/s1", "r2/z1/s1")
    apply_locality(cla, "r1/z1/s1", Setting())
    assert _priorities(cla) == {"r1/z2/s1": 0, "r2/z1/s1": 1}


def test_failover_to_region_comes_right_after_own_region() -> None:
    cla = _cla(*LOCALITIES)
    apply_locality(cla, "r1/z1/s1", Setting.model_validate({"failover": [{"from": "r1", "to": "r3"}]}))
    assert _priorities(cla) == {"r1/z1/s1": 0, "r1/z1/s2": 1, "r1/z2/s1": 2, "r3/z1/s1": 3, "r2/z1/s1": 4}
    other = _cla(*LOCALITIES)
    failover = Setting.model_validate({"failover": [{"from": "r1", "to": "r3"}]})
    apply_locality(other, "r2/z1/s1", failover)  # rule not for r2
    assert _priorities(other) == {"r2/z1/s1": 0, "r1/z1/s1": 1, "r1/z1/s2": 1, "r1/z2/s1": 1, "r3/z1/s1": 1}


def test_distribute_weights_for_matching_proxy_and_drops_unnamed_localities() -> None:
    setting = Setting.model_validate(
        {
            "distribute": [
                {"from": "r9/*", "to": {"r3/*": 100}},
                {"from": "r1/z1/*", "to": {"r1/z1/*": 80, "r2/*": 20}},
            ]
        }
    )
    cla = _cla(*LOCALITIES)
    apply_locality(cla, "r1/z1/s7", setting)
    # r1/z1's 80 split over its two subzones; r1/z2 and r3 are named by no "to" entry: no traffic
    assert _weights(cla) == {"r1/z1/s1": 40, "r1/z1/s2": 40, "r2/z1/s1": 20}
    assert {g.priority for g in cla.endpoints} == {0}


def test_distribute_keeps_everything_for_a_proxy_no_rule_matches() -> None:
    cla = _cla(*LOCALITIES, weight=3)
    apply_locality(
        cla, "r5/z1", Setting.model_validate({"distribute": [{"from": "r1/*", "to": {"r1/*": 100}}]})
    )
    assert _weights(cla) == dict.fromkeys(LOCALITIES, 3)


def test_locality_match_wildcards_and_missing_parts() -> None:
    loc = ("r1", "z1", "s1")
    assert locality_matches(loc, "r1") and locality_matches(loc, "r1/*") and locality_matches(loc, "*")
    assert locality_matches(loc, "r1/z1/s1") and not locality_matches(loc, "r1/z2")
    assert not locality_matches(loc, "r2/*") and not locality_matches(loc, "r1/z1/s2")


def test_node_locality_reaches_proxy() -> None:
    assert locality_text("r1", "z1", "") == "r1/z1"
    assert locality_text("", "", "") == ""
    proxy = parse_proxy("sidecar~10.0.0.1~a.default~default.svc.cluster.local", None, "r1/z1/s1")
    assert proxy.locality == "r1/z1/s1"


def _dr(host: str, policy: dict[str, Any]) -> Config:
    return Config.parse(
        "DestinationRule", "networking.istio.io", "v1", NS, host, {"host": host, "trafficPolicy": policy}
    )


def _context(*configs: Config, drop: tuple[str, str] = ("", ""), version: str = "1") -> PushContext:
    """``web`` and ``api`` with one endpoint in each of LOCALITIES (but ``drop``: (app, locality))."""
    services = {
        h: Service(f"{h}.{NS}.svc.cluster.local", NS, (Port("http", 80, "HTTP"),)) for h in ("web", "api")
    }
    workloads = {
        f"{app}-{i}": Workload(
            f"{app}-{i}",
            NS,
            f"10.0.{n}.{i}",
            {"app": app},
            locality=loc,
            services=(f"{app}.{NS}.svc.cluster.local",),
        )
        for n, app in enumerate(("web", "api"))
        for i, loc in enumerate(LOCALITIES)
        if (app, loc) != drop
    }
    return build_push_context(version, {f"{c.kind}/{c.name}": c for c in configs}, services, workloads)


def test_locality_setting_needs_outlier_detection_or_distribute_and_not_disabled() -> None:
    assert locality_setting(_context(), WEB_CLUSTER) is None
    assert locality_setting(_context(_dr("web", {"loadBalancer": {"simple": "RANDOM"}})), WEB_CLUSTER) is None
    assert locality_setting(_context(_dr("web", {"outlierDetection": OUTLIER})), WEB_CLUSTER) == Setting()
    disabled = {"outlierDetection": OUTLIER, "loadBalancer": {"localityLbSetting": {"enabled": False}}}
    assert locality_setting(_context(_dr("web", disabled)), WEB_CLUSTER) is None
    dist = {"localityLbSetting": {"distribute": [{"from": "r1/*", "to": {"r1/*": 100}}]}}
    assert locality_setting(_context(_dr("web", {"loadBalancer": dist})), WEB_CLUSTER) is not None
    assert locality_setting(_context(_dr("web", {"outlierDetection": OUTLIER})), API_CLUSTER) is None


def _with_mesh(ctx: PushContext, mesh_yaml: str) -> PushContext:
    return dataclasses.replace(ctx, mesh=parse_mesh_config(mesh_yaml, "mesh.yaml"))


def test_mesh_locality_lb_setting_is_the_default_a_destination_rule_overrides() -> None:
    """MeshConfig ``localityLbSetting``: used where a rule has none (its ``distribute`` even without
    a rule), the rule's own wins, and the mesh's ``enabled: false`` turns it off everywhere."""
    mesh = "localityLbSetting:\n  distribute: [{from: r1/*, to: {r2/*: 100}}]\n"
    no_rule = _with_mesh(_context(), mesh)
    cla = _eds(ResourceCache(), no_rule, "r1/z1/s1")[WEB_CLUSTER]
    assert _weights(cla) == {"r2/z1/s1": 100}  # the mesh's distribute: all of r1's traffic to r2
    assert _weights(_eds(ResourceCache(), no_rule, "r3/z1/s1")[WEB_CLUSTER]) == dict.fromkeys(LOCALITIES, 1)
    (web,) = [c for c in build_clusters(no_rule, _proxy("r1/z1/s1")) if c.name == WEB_CLUSTER]
    assert web.common_lb_config.HasField("locality_weighted_lb_config")
    own = {"outlierDetection": OUTLIER, "loadBalancer": {"localityLbSetting": {"failover": []}}}
    ruled = _with_mesh(_context(_dr("web", own)), mesh)
    assert _priorities(_eds(ResourceCache(), ruled, "r1/z1/s1")[WEB_CLUSTER])["r2/z1/s1"] == 3  # the rule's
    off = _with_mesh(
        _context(_dr("web", {"outlierDetection": OUTLIER})), "localityLbSetting: {enabled: false}\n"
    )
    assert locality_setting(off, WEB_CLUSTER) is None
    assert locality_setting(_context(_dr("web", {"outlierDetection": OUTLIER})), WEB_CLUSTER) == Setting()


def _proxy(locality: str) -> Any:
    return replace(
        parse_proxy("sidecar~10.9.0.1~c.default~default.svc.cluster.local", None), locality=locality
    )


def _eds(
    cache: ResourceCache, ctx: PushContext, locality: str
) -> dict[str, endpoint_pb2.ClusterLoadAssignment]:
    (part,) = cache.parts(ctx, _proxy(locality), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER}))
    out = {}
    for name, res in part.items.items():
        cla = endpoint_pb2.ClusterLoadAssignment()
        res.any.Unpack(cla)
        out[name] = cla
    return out


def test_cache_keeps_locality_lb_clas_per_proxy_locality_and_shares_the_rest() -> None:
    ctx = _context(_dr("web", {"outlierDetection": OUTLIER}))
    cache = ResourceCache()
    first = cache.parts(ctx, _proxy("r1/z1/s1"), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER}))[0]
    second = cache.parts(ctx, _proxy("r2/z1/s1"), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER}))[0]
    again = cache.parts(ctx, _proxy("r1/z1/s1"), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER}))[0]
    assert again is first and second is not first
    assert first.items[API_CLUSTER] is second.items[API_CLUSTER]  # no locality LB: one shared CLA
    assert first.items[WEB_CLUSTER].version != second.items[WEB_CLUSTER].version
    assert _priorities(_eds(cache, ctx, "r1/z1/s1")[WEB_CLUSTER])["r1/z1/s1"] == 0
    assert _priorities(_eds(cache, ctx, "r2/z1/s1")[WEB_CLUSTER]) == {
        "r2/z1/s1": 0,
        "r1/z1/s1": 1,
        "r1/z1/s2": 1,
        "r1/z2/s1": 1,
        "r3/z1/s1": 1,
    }
    assert {g.priority for g in _eds(cache, ctx, "r2/z1/s1")[API_CLUSTER].endpoints} == {0}


def test_clear_eds_drops_every_locality_of_the_changed_host_only() -> None:
    ctx = _context(_dr("web", {"outlierDetection": OUTLIER}))
    cache = ResourceCache()
    before = {loc: _eds(cache, ctx, loc) for loc in ("r1/z1/s1", "r2/z1/s1")}
    parts_before = cache.parts(
        ctx, _proxy("r1/z1/s1"), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER})
    )[0]
    # the web endpoints change: the one in r1/z1/s1 goes away
    new_ctx = _context(_dr("web", {"outlierDetection": OUTLIER}), drop=("web", "r1/z1/s1"), version="2")
    cache.clear_eds(frozenset({WEB}))
    after = cache.parts(new_ctx, _proxy("r1/z1/s1"), common.ENDPOINT, frozenset({WEB_CLUSTER, API_CLUSTER}))[
        0
    ]
    assert after is not parts_before
    assert after.items[API_CLUSTER] is parts_before.items[API_CLUSTER]  # api untouched, still cached
    for loc in ("r1/z1/s1", "r2/z1/s1"):
        web = _eds(cache, new_ctx, loc)[WEB_CLUSTER]
        assert "r1/z1/s1" not in _priorities(web)
        assert web != before[loc][WEB_CLUSTER]


def _tiered_context(*configs: Config) -> PushContext:
    """``web`` with one endpoint in each of LOCALITIES, alternately labelled tier gold and silver."""
    services = {"web": Service(WEB, NS, (Port("http", 80, "HTTP"),))}
    workloads = {
        f"web-{i}": Workload(
            f"web-{i}",
            NS,
            f"10.0.0.{i}",
            {"app": "web", "tier": ("gold", "silver")[i % 2]},
            locality=loc,
            services=(WEB,),
        )
        for i, loc in enumerate(LOCALITIES)
    }
    return build_push_context("1", {f"{c.kind}/{c.name}": c for c in configs}, services, workloads)


def _ranked(ctx: PushContext, locality: str, labels: dict[str, str]) -> dict[str, int]:
    """Priority of each web endpoint (by address) as the proxy with ``labels`` gets it."""
    proxy = replace(_proxy(locality), labels=labels)
    (part,) = ResourceCache().parts(ctx, proxy, common.ENDPOINT, frozenset({WEB_CLUSTER}))
    cla = endpoint_pb2.ClusterLoadAssignment()
    part.items[WEB_CLUSTER].any.Unpack(cla)
    return {
        lb.endpoint.address.socket_address.address: g.priority for g in cla.endpoints for lb in g.lb_endpoints
    }


def _failover_priority(keys: list[str], **more: Any) -> Config:
    setting = {"failoverPriority": keys, **more}
    return _dr("web", {"outlierDetection": OUTLIER, "loadBalancer": {"localityLbSetting": setting}})


def test_failover_priority_ranks_endpoints_by_the_proxys_labels_not_its_locality() -> None:
    ctx = _tiered_context(_failover_priority(["tier"]))
    # gold: .0 .2 .4, silver: .1 .3; a silver proxy in r1/z1/s1 (where .0, a gold one, is)
    assert _ranked(ctx, "r1/z1/s1", {"tier": "silver"}) == {
        "10.0.0.1": 0,
        "10.0.0.3": 0,
        "10.0.0.0": 1,
        "10.0.0.2": 1,
        "10.0.0.4": 1,
    }


def test_failover_priority_needs_the_earlier_keys_to_match_and_reads_localities() -> None:
    ctx = _tiered_context(_failover_priority(["topology.kubernetes.io/region", "tier"]))
    # r1: .0 gold, .1 silver, .2 gold; r2: .3 silver; r3: .4 gold. A gold proxy in r1:
    # region and tier match → 0; region only → 1; region differs (tier alone does not count) → 2
    assert _ranked(ctx, "r1/z1/s1", {"tier": "gold"}) == {
        "10.0.0.0": 0,
        "10.0.0.2": 0,
        "10.0.0.1": 1,
        "10.0.0.3": 2,
        "10.0.0.4": 2,
    }


def test_failover_priority_with_an_explicit_value_ignores_the_proxys_own() -> None:
    ctx = _tiered_context(_failover_priority(["tier=gold"]))
    ranks = _ranked(ctx, "r1/z1/s1", {"tier": "silver"})
    assert ranks == {"10.0.0.0": 0, "10.0.0.2": 0, "10.0.0.4": 0, "10.0.0.1": 1, "10.0.0.3": 1}


def test_failover_priority_then_locality_failover_within_each_rank() -> None:
    ctx = _tiered_context(_failover_priority(["tier"], failover=[{"from": "r1", "to": "r3"}]))
    # gold proxy in r1/z1/s1: gold first, by locality (.0 same subzone, .2 other zone, .4 r3);
    # then silver by locality (.1 other subzone, .3 r2)
    assert _ranked(ctx, "r1/z1/s1", {"tier": "gold"}) == {
        "10.0.0.0": 0,
        "10.0.0.2": 1,
        "10.0.0.4": 2,
        "10.0.0.1": 3,
        "10.0.0.3": 4,
    }


def test_cache_keys_eds_by_compared_labels_only_when_a_failover_priority_exists() -> None:
    def part(ctx: PushContext, labels: dict[str, str]) -> Any:
        proxy = replace(_proxy("r1/z1/s1"), labels=labels)
        return cache.parts(ctx, proxy, common.ENDPOINT, frozenset({WEB_CLUSTER}))[0]

    cache = ResourceCache()
    plain = _tiered_context(_dr("web", {"outlierDetection": OUTLIER}))
    assert part(plain, {"tier": "gold", "app": "a"}) is part(plain, {"tier": "silver", "app": "b"})
    cache.clear()
    ranked = _tiered_context(_failover_priority(["tier"]))
    assert part(ranked, {"tier": "gold", "app": "a"}) is part(ranked, {"tier": "gold", "app": "b"})
    assert part(ranked, {"tier": "gold"}) is not part(ranked, {"tier": "silver"})
