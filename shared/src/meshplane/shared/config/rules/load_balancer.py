"""Istio's load balancer rules: consistent hashing (ring hash, Maglev) and locality weighting."""

from __future__ import annotations

from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.destination_rule import (
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
)

MAGLEV_MAX_TABLE = 5000011
TOPOLOGY_LABELS = frozenset(
    {"topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"}
)


def is_prime(n: int) -> bool:
    """Primality as Envoy tests Maglev table sizes (1, 2 and 3 count as prime there)."""
    if 0 < n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % f for f in range(3, int(n**0.5) + 1, 2))


def check_load_balancer(
    lb: LoadBalancerSettings, outlier: OutlierDetection | None, path: str, issues: Issues
) -> None:
    ch = lb.consistent_hash
    if ch is not None:
        hpath = f"{path}.consistentHash"
        if ch.http_cookie is not None and not ch.http_cookie.name:
            issues.error(f"{hpath}.httpCookie.name", "name required for httpCookie")
        if ch.minimum_ring_size is not None:
            issues.warn(f"{hpath}.minimumRingSize", "minimumRingSize is deprecated; use ringHash instead")
            if ch.ring_hash is not None or ch.maglev is not None:
                issues.error(hpath, "only one of minimumRingSize or maglev/ringHash can be specified")
        if ch.ring_hash is not None and ch.maglev is not None:
            issues.error(hpath, "only one of ringHash or maglev may be set")
        if ch.maglev is not None:
            size = ch.maglev.table_size or 0
            mpath = f"{hpath}.maglev.tableSize"
            if size == 0:
                issues.error(mpath, "tableSize must be set for maglev")
            elif size >= MAGLEV_MAX_TABLE:
                issues.error(mpath, f"tableSize must be less than {MAGLEV_MAX_TABLE} for maglev")
            elif not is_prime(size):
                issues.error(mpath, f"tableSize {size} must be a prime number for maglev")
    if lb.locality_lb_setting is not None:
        check_locality_lb(lb.locality_lb_setting, outlier, f"{path}.localityLbSetting", issues)
    if lb.warmup_duration_secs is not None and (problem := check_duration(lb.warmup_duration_secs)):
        issues.error(f"{path}.warmupDurationSecs", problem)
    if lb.warmup is not None:
        warmup = lb.warmup
        if warmup.duration is None:
            issues.error(f"{path}.warmup.duration", "warmup duration is required")
        elif problem := check_duration(warmup.duration):
            issues.error(f"{path}.warmup.duration", problem)
        if warmup.minimum_percent is not None and not 0 <= warmup.minimum_percent <= 100:
            issues.error(f"{path}.warmup.minimumPercent", "minimumPercent must be in the range 0..100")
        if warmup.aggression is not None and warmup.aggression < 1:
            issues.error(f"{path}.warmup.aggression", "aggression must be at least 1.0")


def check_locality_lb(
    setting: LocalityLoadBalancerSetting, outlier: OutlierDetection | None, path: str, issues: Issues
) -> None:
    if setting.distribute and setting.failover:
        issues.error(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if setting.failover:
        for i, label in enumerate(setting.failover_priority or []):
            if label in TOPOLOGY_LABELS:
                issues.error(
                    f"{path}.failoverPriority[{i}]",
                    f"can not simultaneously set 'failover' and "
                    f"topology label {label!r} in 'failoverPriority'",
                )
    sources: list[str] = []
    for i, dist in enumerate(setting.distribute or []):
        dpath = f"{path}.distribute[{i}]"
        sources.append(dist.from_ or "")
        total = 0
        for locality, weight in (dist.to or {}).items():
            if not 1 <= weight <= 100:
                issues.error(f"{dpath}.to.{locality}", f"locality weight {weight} must be in range [1, 100]")
            total += weight
        if total != 100:
            issues.error(f"{dpath}.to", f"total locality weight {total} != 100")
        if problem := localities_problem(list(dist.to or {})):
            issues.error(f"{dpath}.to", problem)
    if problem := localities_problem(sources):
        issues.error(f"{path}.distribute", problem)
    if (setting.failover or setting.failover_priority) and outlier is None:
        issues.warn(path, "outlier detection policy must be provided for failover")
    for i, fo in enumerate(setting.failover or []):
        fpath = f"{path}.failover[{i}]"
        source, target = fo.from_ or "", fo.to or ""
        if source == target:
            issues.error(fpath, "locality lb failover settings must specify different regions")
        if "/" in source or "/" in target:
            issues.error(fpath, "locality lb failover only specifies regions")
        if "*" in source or "*" in target:
            issues.error(fpath, "locality lb failover region should not contain '*' wildcard")


def localities_problem(localities: list[str]) -> str | None:
    """``region[/zone[/subzone]]`` each; one ``*`` at most, at the end; no overlapping entries."""
    seen: list[tuple[str, ...]] = []
    for locality in localities:
        stars = locality.count("*")
        if stars > 1 or (stars == 1 and not locality.endswith("*")):
            return f"locality {locality!r}: wildcard '*' may appear once, at the end"
        parts = locality.split("/", 2)
        if any(p == "" for p in parts):
            return f"locality {locality!r} must not contain empty region/zone/subzone info"
        key = tuple(p for p in parts if p != "*")
        for other in seen:
            shorter, longer = (key, other) if len(key) <= len(other) else (other, key)
            if longer[: len(shorter)] == shorter:
                return f"locality {locality!r} overlaps with previously specified ones"
        seen.append(key)
    return None
