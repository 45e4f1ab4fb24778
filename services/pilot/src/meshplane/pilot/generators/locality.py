"""Locality load balancing: a ClusterLoadAssignment reshaped for the locality of the proxy asking.

Istio's behaviour, for a DestinationRule ``loadBalancer.localityLbSetting`` that is not disabled:
``distribute`` turns the proxy's matching rule into locality weights (one priority, localities no
``to`` entry names are dropped); otherwise, when ``outlierDetection`` is set, ``failover`` gives
each locality a priority by how much of it the proxy shares (subzone 0, zone 1, region 2, rest 3,
with a ``failover`` ``to`` region right after the proxy's own region), squashed to be consecutive.

``failoverPriority`` (with outlier detection) ranks endpoints by labels instead: for the ordered
keys ``[k1 .. kN]``, an endpoint whose first ``m`` keys all match the proxy's values gets priority
``N - m``. A ``key=value`` entry compares the endpoint with that value instead of the proxy's.
``topology.kubernetes.io/region``, ``topology.kubernetes.io/zone`` and ``topology.istio.io/subzone``
compare localities; every other key compares labels (a label both lack counts as matching, like
Istio's lookups in Go maps). With ``failover`` also set, the locality ranks order endpoints within
each label priority.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from meshplane.pilot.generators.common import ClusterKey
from meshplane.pilot.generators.policy import locality_lb, merged_policy
from meshplane.pilot.model.config import Endpoint, given
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config import models
from meshplane.shared.config.models import LocalityLoadBalancerSetting as Setting
from meshplane.shared.config.models.destination_rule import LocalityDistribute, LocalityFailover

#: failoverPriority keys that name a part of the locality rather than a label
TOPOLOGY_KEYS = {
    "topology.kubernetes.io/region": 0,
    "topology.kubernetes.io/zone": 1,
    "topology.istio.io/subzone": 2,
}


def split_locality(text: str) -> tuple[str, str, str]:
    """``region/zone/subzone`` (any part may be missing) as three strings."""
    region, zone, subzone = ([*text.split("/"), "", ""])[:3]
    return region, zone, subzone


def locality_matches(locality: tuple[str, str, str], rule: str) -> bool:
    """Istio's match of a locality against ``region/zone/subzone`` where ``*`` or a missing part
    matches anything (the region must be given)."""
    want = split_locality(rule)
    if want[0] != "*" and want[0] != locality[0]:
        return False
    return all(w in ("*", "") or w == have for w, have in zip(want[1:], locality[1:], strict=True))


def locality_setting(ctx: PushContext, cluster_name: str) -> Setting | None:
    """The ``localityLbSetting`` in force for an outbound cluster, or None when its endpoints are
    the same for every proxy (disabled, or neither ``distribute`` nor outlier detection). The rule's
    setting, else MeshConfig's ``localityLbSetting`` (also without a rule: its ``distribute``)."""
    key = ClusterKey.parse(cluster_name)
    if key is None or key.direction != "outbound":
        return None
    svc = ctx.service(key.host)
    if svc is None:
        return None
    dr = ctx.destination_rule(svc.namespace, svc.hostname)
    policy = merged_policy(dr.spec if dr else None, key.port, key.subset)
    own = policy.load_balancer.locality_lb_setting if policy.load_balancer else None
    setting = locality_lb(ctx.mesh.traffic.locality_lb_setting, own)
    if setting is None:
        return None
    if setting.distribute or given(policy.outlier_detection):
        return setting
    return None


def _tuple(loc: base_pb2.Locality) -> tuple[str, str, str]:
    return loc.region, loc.zone, loc.sub_zone


def apply_locality(cla: endpoint_pb2.ClusterLoadAssignment, proxy_locality: str, setting: Setting) -> None:
    """Reshape ``cla`` in place for a proxy in ``proxy_locality`` under ``setting``."""
    proxy = split_locality(proxy_locality)
    if setting.distribute:
        _distribute(cla, proxy, setting.distribute)
    else:
        _failover(cla, proxy, setting.failover or [])


def _distribute(
    cla: endpoint_pb2.ClusterLoadAssignment,
    proxy: tuple[str, str, str],
    rules: list[LocalityDistribute],
) -> None:
    for rule in rules:
        if not locality_matches(proxy, rule.from_ or ""):
            continue
        weights: dict[int, int] = {}
        for to, percent in (rule.to or {}).items():
            matched = {
                i: group.load_balancing_weight.value or 1
                for i, group in enumerate(cla.endpoints)
                if i not in weights and locality_matches(_tuple(group.locality), to)
            }
            total = sum(matched.values())
            for i, original in matched.items():
                weights[i] = math.ceil(original * percent / total)
        kept = [group for i, group in enumerate(cla.endpoints) if weights.get(i)]
        for i, group in enumerate(cla.endpoints):
            if weights.get(i):
                group.load_balancing_weight.value = weights[i]
        del cla.endpoints[:]
        cla.endpoints.extend(kept)
        return


Failover = list[LocalityFailover]


def _locality_rank(loc: tuple[str, str, str], proxy: tuple[str, str, str], rules: Failover) -> int:
    if loc[0] != proxy[0]:
        for rule in rules:
            if (rule.from_ or "") == proxy[0]:
                return 3 if loc[0] == (rule.to or "") else 4
        return 3
    if loc[1] != proxy[1]:
        return 2
    return 1 if loc[2] != proxy[2] else 0


def _failover(cla: endpoint_pb2.ClusterLoadAssignment, proxy: tuple[str, str, str], rules: Failover) -> None:
    _set_priorities(cla, [_locality_rank(_tuple(g.locality), proxy, rules) for g in cla.endpoints])


def _set_priorities(cla: endpoint_pb2.ClusterLoadAssignment, ranks: list[Any]) -> None:
    """Give each group the position of its rank among the distinct ranks (Envoy wants priorities
    0..N without gaps)."""
    squashed = {r: i for i, r in enumerate(sorted(set(ranks)))}
    for group, rank in zip(cla.endpoints, ranks, strict=True):
        group.priority = squashed[rank]


def label_priority(
    setting: Setting, proxy_labels: dict[str, str], proxy_locality: str
) -> Callable[[Endpoint], int] | None:
    """``failoverPriority``'s rank of an endpoint for this proxy, or None when the setting has none."""
    keys = list(setting.failover_priority or [])
    if not keys:
        return None
    proxy_loc = split_locality(proxy_locality)
    wants: list[tuple[str, str]] = []
    for key in keys:
        name, eq, value = key.partition("=")
        if not eq:
            value = proxy_loc[TOPOLOGY_KEYS[name]] if name in TOPOLOGY_KEYS else proxy_labels.get(name, "")
        wants.append((name, value))

    def rank(ep: Endpoint) -> int:
        loc = split_locality(ep.locality)
        matched = 0
        for name, value in wants:
            have = loc[TOPOLOGY_KEYS[name]] if name in TOPOLOGY_KEYS else ep.labels.get(name, "")
            if have != value:
                break
            matched += 1
        return len(wants) - matched

    return rank


def apply_label_priorities(
    cla: endpoint_pb2.ClusterLoadAssignment, proxy_locality: str, setting: Setting
) -> None:
    """After ``build_load_assignment`` grouped endpoints by (label rank, locality) into
    ``group.priority``: add the locality ranks of ``failover`` when it is set, and squash."""
    failover = setting.failover or []
    proxy = split_locality(proxy_locality)
    ranks: list[Any] = [
        (g.priority, _locality_rank(_tuple(g.locality), proxy, failover) if failover else 0)
        for g in cla.endpoints
    ]
    _set_priorities(cla, ranks)


def failover_label_keys(ctx: PushContext) -> tuple[str, ...]:
    """Label names any DestinationRule's ``failoverPriority`` compares with the proxy's own."""
    found = {
        key
        for dr in ctx.of_kind(models.DestinationRule)
        for lb in _load_balancers(dr.spec)
        if lb.locality_lb_setting is not None
        for key in lb.locality_lb_setting.failover_priority or []
        if "=" not in key and key not in TOPOLOGY_KEYS
    }
    return tuple(sorted(found))


def _load_balancers(dr: models.DestinationRule) -> Iterator[models.LoadBalancerSettings]:
    """Every ``loadBalancer`` of a rule: top level, port level, and the same in each subset."""
    policies = [dr.traffic_policy, *(s.traffic_policy for s in dr.subsets or [])]
    for policy in policies:
        if policy is None:
            continue
        for lb in [policy.load_balancer, *(p.load_balancer for p in policy.port_level_settings or [])]:
            if lb is not None:
                yield lb
