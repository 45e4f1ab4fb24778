"""Locality load balancing: a ClusterLoadAssignment reshaped for the locality of the proxy asking.

Istio's behaviour, for a DestinationRule ``loadBalancer.localityLbSetting`` that is not disabled:
``distribute`` turns the proxy's matching rule into locality weights (one priority, localities no
``to`` entry names are dropped); otherwise, when ``outlierDetection`` is set, ``failover`` gives
each locality a priority by how much of it the proxy shares (subzone 0, zone 1, region 2, rest 3,
with a ``failover`` ``to`` region right after the proxy's own region), squashed to be consecutive.
``failoverPriority`` (label-based priorities) is not applied.
"""

from __future__ import annotations

import math
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from meshplane.pilot.generators.common import ClusterKey
from meshplane.pilot.generators.policy import merged_policy
from meshplane.pilot.model.push_context import PushContext

Setting = dict[str, Any]


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
    the same for every proxy (no rule, disabled, or neither ``distribute`` nor outlier detection)."""
    key = ClusterKey.parse(cluster_name)
    if key is None or key.direction != "outbound":
        return None
    svc = ctx.service(key.host)
    if svc is None:
        return None
    dr = ctx.destination_rule(svc.namespace, svc.hostname)
    if dr is None:
        return None
    policy = merged_policy(dr.spec, key.port, key.subset)
    setting: Setting = dict((policy.get("loadBalancer") or {}).get("localityLbSetting") or {})
    if setting.get("enabled") is False:
        return None
    if setting.get("distribute") or policy.get("outlierDetection"):
        return setting
    return None


def _tuple(loc: base_pb2.Locality) -> tuple[str, str, str]:
    return loc.region, loc.zone, loc.sub_zone


def apply_locality(cla: endpoint_pb2.ClusterLoadAssignment, proxy_locality: str, setting: Setting) -> None:
    """Reshape ``cla`` in place for a proxy in ``proxy_locality`` under ``setting``."""
    proxy = split_locality(proxy_locality)
    distribute = setting.get("distribute") or []
    if distribute:
        _distribute(cla, proxy, distribute)
    else:
        _failover(cla, proxy, setting.get("failover") or [])


def _distribute(
    cla: endpoint_pb2.ClusterLoadAssignment, proxy: tuple[str, str, str], rules: list[dict[str, Any]]
) -> None:
    for rule in rules:
        if not locality_matches(proxy, str(rule.get("from") or "")):
            continue
        weights: dict[int, int] = {}
        for to, percent in (rule.get("to") or {}).items():
            matched = {
                i: group.load_balancing_weight.value or 1
                for i, group in enumerate(cla.endpoints)
                if i not in weights and locality_matches(_tuple(group.locality), str(to))
            }
            total = sum(matched.values())
            for i, original in matched.items():
                weights[i] = math.ceil(original * int(percent) / total)
        kept = [group for i, group in enumerate(cla.endpoints) if weights.get(i)]
        for i, group in enumerate(cla.endpoints):
            if weights.get(i):
                group.load_balancing_weight.value = weights[i]
        del cla.endpoints[:]
        cla.endpoints.extend(kept)
        return


def _failover(
    cla: endpoint_pb2.ClusterLoadAssignment, proxy: tuple[str, str, str], rules: list[dict[str, Any]]
) -> None:
    raw: list[int] = []
    for group in cla.endpoints:
        loc = _tuple(group.locality)
        if loc[0] != proxy[0]:
            priority = 3
            for rule in rules:
                if str(rule.get("from") or "") == proxy[0]:
                    if loc[0] != str(rule.get("to") or ""):
                        priority = 4
                    break
        elif loc[1] != proxy[1]:
            priority = 2
        elif loc[2] != proxy[2]:
            priority = 1
        else:
            priority = 0
        raw.append(priority)
    squashed = {p: i for i, p in enumerate(sorted(set(raw)))}
    for group, priority in zip(cla.endpoints, raw, strict=True):
        group.priority = squashed[priority]
