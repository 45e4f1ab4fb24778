"""Remote clusters' registries (multi-cluster): watched read-only over their JetStream domains.

For each ``--remote-cluster ID[=DOMAIN]`` Pilot watches that cluster's ``mesh-services``,
``mesh-workloads`` and ``mesh-components`` buckets through the leafnode that joins the clusters'
buses (``$JS.<domain>.API``). Config is never read from another cluster (multi-primary).

* Services merge by hostname and namespace (Istio's namespace sameness): the local cluster's
  Service if there is one, else a remote one; endpoints are the union, each keeping its cluster
  (``cluster_id``, always the remote's ID as Pilot knows it) and network.
* A remote workload change is an EDS push for its hosts, as a local one; a remote service change
  a full push.
* Liveness: the freshest ``updated`` of the remote's ``galley.*`` records in its components
  bucket (Galley rewrites its record every few seconds). Older than ``--remote-stale-after``
  (or no Galley record at all): the cluster is stale and its endpoints leave EDS; when a fresh
  record arrives (e.g. after the leafnode reconnects) they come back. :meth:`RemoteWatcher.check`
  re-evaluates it against an injectable clock; :meth:`RemoteWatcher.run_checks` does so
  periodically.
* A remote that cannot be reached does not hold up Pilot: its watches retry on their own
  (``KVWatch``) while the local cluster is served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshplane.pilot.model.config import Service, Workload, service_from_bus, workload_from_bus
from meshplane.pilot.model.push_request import PushRequest
from meshplane.proto.bus.v1 import registry_pb2, status_pb2
from meshplane.shared.bus import Bus, EventType, TypedKV
from meshplane.shared.bus.names import COMPONENTS_BUCKET, SERVICES_BUCKET, WORKLOADS_BUCKET

log = logging.getLogger("meshplane.pilot.ingest.remote")

Submit = Callable[[PushRequest], None]
#: the records of a cluster's Galleys in its components bucket (``<component>.<instance>``)
_GALLEY_PREFIX = "galley."


@dataclass
class RemoteRegistry:
    """What Pilot knows of one remote cluster."""

    cluster_id: str
    domain: str
    services: dict[str, Service] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    #: its Galleys' records: key -> ``updated`` as seconds since the epoch
    galleys: dict[str, float] = field(default_factory=dict)
    #: buckets replayed in full at least once
    synced: set[str] = field(default_factory=set)
    #: stale until a fresh Galley record has been seen
    stale: bool = True

    @property
    def last_seen(self) -> float | None:
        """When its Galley last wrote (the freshest ``updated``), None before any record."""
        return max(self.galleys.values(), default=None)

    def is_stale(self, now: float, stale_after: float) -> bool:
        seen = self.last_seen
        return seen is None or now - seen > stale_after

    def live_workloads(self) -> dict[str, Workload]:
        """Its workloads as they enter the push context (none while it is stale)."""
        return {} if self.stale else self.workloads

    def endpoint_count(self) -> int:
        return len(self.workloads)

    def describe(self, now: float) -> dict[str, Any]:
        """Its line in ``/debug/clusterz``."""
        seen = self.last_seen
        return {
            "id": self.cluster_id,
            "domain": self.domain,
            "last_seen": None if seen is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen)),
            "age_seconds": None if seen is None else round(now - seen, 3),
            "stale": self.stale,
            "synced": sorted(self.synced),
            "services": len(self.services),
            "endpoints": len(self.workloads),
        }


class RemoteWatcher:
    """Watches one remote cluster's registry into ``remote`` and asks for pushes through
    ``submit`` (set once Pilot serves; before that changes only update the state)."""

    def __init__(
        self,
        bus: Bus,
        remote: RemoteRegistry,
        hosts_of: Callable[[Workload], frozenset[str]],
        stale_after: float,
        workload_entries: bool = True,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[RemoteRegistry], None] | None = None,
    ) -> None:
        self.remote = remote
        self.stale_after = stale_after
        self.workload_entries = workload_entries
        self.clock = clock
        self.submit: Submit | None = None
        self._hosts_of = hosts_of
        self._on_change = on_change
        d = remote.domain
        self._services = TypedKV(bus, SERVICES_BUCKET, registry_pb2.Service, domain=d)
        self._workloads = TypedKV(bus, WORKLOADS_BUCKET, registry_pb2.WorkloadInstance, domain=d)
        self._components = TypedKV(bus, COMPONENTS_BUCKET, status_pb2.ComponentInfo, domain=d)

    async def run(self) -> None:
        """Watch its three buckets until cancelled (each watch recovers from the leafnode or the
        remote server going away by itself)."""
        log.info(
            "remote cluster %s: watching its registry in domain %s",
            self.remote.cluster_id,
            self.remote.domain,
        )
        r = self.remote
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch("services", self._services, self._on_service, r.services))
            group.create_task(self._watch("workloads", self._workloads, self._on_workload, r.workloads))
            group.create_task(self._watch("components", self._components, self._on_component, r.galleys))

    async def run_checks(self, interval: float) -> None:
        """Re-evaluate staleness every ``interval`` seconds (a silent cluster sends no event)."""
        while True:
            await asyncio.sleep(interval)
            self.check()

    async def _watch(
        self,
        part: str,
        kv: TypedKV[Any],
        handle: Callable[[str, Any], PushRequest | None],
        held: dict[str, Any],
    ) -> None:
        """Apply one bucket's events; ``held`` is what an earlier run left (a restarted task):
        what the replay no longer has is deleted once it is complete."""
        replayed: set[str] | None = set()
        async with kv.watch() as w:
            async for ev in w:
                if ev.type is EventType.SYNCED:
                    for gone in sorted(set(held) - (replayed or set())):
                        self._emit(handle(gone, None))
                    replayed = None
                    if part not in self.remote.synced:
                        log.info(
                            "remote cluster %s: %s replayed (%d)", self.remote.cluster_id, part, len(w.keys)
                        )
                    self.remote.synced.add(part)
                    self._changed()
                    continue
                if replayed is not None:
                    replayed.add(ev.key)
                self._emit(handle(ev.key, ev.value if ev.type is EventType.PUT else None))

    def _emit(self, req: PushRequest | None) -> None:
        self._changed()
        if req is not None and self.submit is not None:
            self.submit(req)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.remote)

    def _on_service(self, key: str, value: registry_pb2.Service | None) -> PushRequest:
        if value is None:
            self.remote.services.pop(key, None)
        else:
            self.remote.services[key] = service_from_bus(value)
        return PushRequest(
            full=True, services_changed=True, reason=(f"remote-service:{self.remote.cluster_id}",)
        )

    def _on_workload(self, key: str, value: registry_pb2.WorkloadInstance | None) -> PushRequest | None:
        old = self.remote.workloads.pop(key, None)
        hosts = self._hosts_of(old) if old else frozenset()
        if value is not None and value.source.kind == "WorkloadEntry" and not self.workload_entries:
            value = None  # PILOT_ENABLE_WORKLOAD_ENTRY=false, as for local ones
        if value is not None:
            wl = dataclasses.replace(workload_from_bus(value), cluster_id=self.remote.cluster_id)
            self.remote.workloads[key] = wl
            hosts |= self._hosts_of(wl)
        if self.remote.stale:
            return None  # not in EDS now; they enter when the cluster is fresh again
        return PushRequest(full=False, eds_hosts=hosts, reason=(f"remote-endpoint:{self.remote.cluster_id}",))

    def _on_component(self, key: str, value: status_pb2.ComponentInfo | None) -> PushRequest | None:
        if not key.startswith(_GALLEY_PREFIX):
            return None
        if value is None:
            self.remote.galleys.pop(key, None)
        else:
            self.remote.galleys[key] = value.updated.seconds + value.updated.nanos / 1e9  # 0: never
        self.check()  # pushes by itself when the cluster turns stale or fresh
        return None

    def check(self) -> PushRequest | None:
        """Mark the cluster stale or fresh by the clock; on a change, its endpoints' EDS push
        (also handed to ``submit``)."""
        stale = self.remote.is_stale(self.clock(), self.stale_after)
        if stale == self.remote.stale:
            return None
        self.remote.stale = stale
        seen = self.remote.last_seen
        if stale:
            log.warning(
                "remote cluster %s is stale (its Galley last wrote %s ago, limit %.0fs): its %d endpoints "
                "leave EDS until it is heard from again",
                self.remote.cluster_id,
                "never" if seen is None else f"{self.clock() - seen:.0f}s",
                self.stale_after,
                len(self.remote.workloads),
            )
        else:
            log.info(
                "remote cluster %s is fresh: its %d endpoints are served",
                self.remote.cluster_id,
                len(self.remote.workloads),
            )
        hosts: frozenset[str] = frozenset().union(
            *(self._hosts_of(w) for w in self.remote.workloads.values())
        )
        req = PushRequest(full=False, eds_hosts=hosts, reason=(f"remote-cluster:{self.remote.cluster_id}",))
        if self.submit is not None:
            self.submit(req)
        self._changed()
        return req


class RemoteClustersCollector(Collector):
    """``pilot_remote_cluster_stale{cluster_id}`` (1 while its endpoints are out of EDS),
    ``pilot_remote_cluster_endpoints{cluster_id}`` and ``pilot_remote_cluster_age_seconds{cluster_id}``
    (since its Galley last wrote; absent before any record), read at scrape time."""

    def __init__(self, remotes: dict[str, RemoteRegistry], clock: Callable[[], float] = time.time) -> None:
        self._remotes = remotes
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["cluster_id"]
        stale = GaugeMetricFamily(
            "pilot_remote_cluster_stale",
            "1 while a remote cluster is stale (its endpoints out of EDS).",
            labels=labels,
        )
        endpoints = GaugeMetricFamily(
            "pilot_remote_cluster_endpoints", "Workload instances known from a remote cluster.", labels=labels
        )
        age = GaugeMetricFamily(
            "pilot_remote_cluster_age_seconds",
            "Seconds since a remote cluster's Galley last wrote.",
            labels=labels,
        )
        now = self._clock()
        for cid, remote in sorted(self._remotes.items()):
            stale.add_metric([cid], 1.0 if remote.stale else 0.0)
            endpoints.add_metric([cid], float(remote.endpoint_count()))
            if (seen := remote.last_seen) is not None:
                age.add_metric([cid], now - seen)
        yield from (stale, endpoints, age)
