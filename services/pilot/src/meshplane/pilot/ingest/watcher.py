"""Watch config, services and workloads on the bus; replay everything before reporting synced.

Config changes and service changes are full pushes; a workload change is an EDS push for the
hosts it belongs to (Istio's incremental endpoint update). Auto-registered WorkloadEntries (the
``mesh-workload-entries`` bucket, see ``xds.autoregister``) are full pushes too: the VM's own
inbound config depends on them. With ``PILOT_ENABLE_WORKLOAD_ENTRY=false`` neither they nor
Galley's WorkloadEntry workloads are used. The MeshConfig Galley publishes (``mesh-meshconfig``)
replaces ``--mesh-config``'s while it is there and is a full push too; one that does not parse is
refused and the one in effect stays.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, cast

from meshplane.pilot.generators import accesslog
from meshplane.pilot.ingest.remote import RemoteRegistry
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.config import (
    AnyConfig,
    Config,
    Service,
    Workload,
    config_from_bus,
    labels_match,
    service_from_bus,
    workload_from_bus,
)
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.model.workload_entry import Entry, is_healthy, workload_of
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import Buckets, EventType
from meshplane.shared.bus.buckets import config_key
from meshplane.shared.config import models
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE, MeshConfig
from meshplane.shared.meshconfig_bus import mesh_config_from_bus
from meshplane.shared.telemetry.tracing import carried_context

log = logging.getLogger("meshplane.pilot.ingest")

Submit = Callable[[PushRequest], None]


#: The label naming the control-plane revision a config object is meant for.
REV_LABEL = "istio.io/rev"


def in_revision(value: config_pb2.ConfigResource, revision: str) -> bool:
    """Istio's LabelsInRevision: an Istio config object without ``istio.io/rev`` is read by every
    revision, one with it only by that revision. Namespaces are not config: their label chooses
    the injector, and every Pilot reads them."""
    if (value.kind, value.group) == ("Namespace", ""):
        return True
    wanted = value.labels.get(REV_LABEL)
    return wanted is None or wanted == revision


class State:
    """The current bus state, as plain dicts keyed by bus key."""

    def __init__(
        self,
        root_namespace: str = DEFAULT_ROOT_NAMESPACE,
        mesh: MeshConfig | None = None,
        workload_entries: bool = True,
        health_checks: bool = True,
        revision: str = "default",
    ) -> None:
        self.revision = revision
        self.root_namespace = root_namespace
        #: PILOT_ENABLE_WORKLOAD_ENTRY, and its _HEALTHCHECKS (off: every entry counts as healthy)
        self.workload_entries = workload_entries
        self.health_checks = health_checks
        self.mesh = mesh or MeshConfig(root_namespace=root_namespace)
        #: ``--mesh-config``'s, in effect while the bus has none
        self.flag_mesh = self.mesh
        self.configs: dict[str, AnyConfig] = {}
        self.services: dict[str, Service] = {}
        self.workloads: dict[str, Workload] = {}
        self.rejected: dict[str, str] = {}
        #: auto-registered WorkloadEntries, and the workloads of the healthy ones
        self.registered: dict[str, Entry] = {}
        self.registered_workloads: dict[str, Workload] = {}
        #: remote clusters' registries by cluster ID (``ingest.remote``; multi-cluster)
        self.remotes: dict[str, RemoteRegistry] = {}

    def merged_services(self) -> dict[str, Service]:
        """Local and remote services by key (namespace + hostname): the local one wins, else a
        remote one (Istio's namespace sameness)."""
        if not self.remotes:
            return self.services
        out: dict[str, Service] = {}
        for remote in self.remotes.values():
            out.update(remote.services)
        out.update(self.services)
        return out

    def snapshot(self, version: str) -> PushContext:
        workloads = self.workloads
        if self.registered_workloads:
            workloads = {**workloads, **{f"auto/{k}": w for k, w in self.registered_workloads.items()}}
        for cid, remote in self.remotes.items():
            if live := remote.live_workloads():
                workloads = {**workloads, **{f"remote/{cid}/{k}": w for k, w in live.items()}}
        return build_push_context(
            version,
            self.configs,
            self.merged_services(),
            workloads,
            self.root_namespace,
            self.mesh,
            workload_entries=self.workload_entries,
        )

    def put_registered(self, key: str, value: Entry | None) -> None:
        """An auto-registered entry changed (None: deleted); only healthy ones are workloads."""
        self.registered.pop(key, None)
        self.registered_workloads.pop(key, None)
        if value is not None:
            self.registered[key] = value
            if not self.health_checks or is_healthy(value):
                self.registered_workloads[key] = workload_of(value)

    def group(self, namespace: str, name: str) -> Config[models.WorkloadGroup] | None:
        cfg = self.configs.get(config_key("networking.istio.io", "WorkloadGroup", namespace, name))
        return cast("Config[models.WorkloadGroup]", cfg) if cfg is not None else None

    def hosts_of(self, wl: Workload) -> frozenset[str]:
        hosts = set(wl.services)
        services = itertools.chain(
            self.services.values(), *(r.services.values() for r in self.remotes.values())
        )
        for svc in services:
            if svc.selector and svc.namespace == wl.namespace and labels_match(svc.selector, wl.labels):
                hosts.add(svc.hostname)
        return frozenset(hosts)


class Watcher:
    def __init__(self, buckets: Buckets, state: State, metrics: Metrics) -> None:
        self.buckets = buckets
        self.state = state
        self.metrics = metrics
        self.synced = asyncio.Event()
        self._synced_parts: set[str] = set()
        self.submit: Submit | None = None

    @property
    def _parts(self) -> int:
        return 5 if self.state.workload_entries else 4

    async def run(self) -> None:
        """Watch the buckets; if one watch fails the others are cancelled and this raises."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch("config", self.buckets.config, self._on_config))
            group.create_task(self._watch("services", self.buckets.services, self._on_service))
            group.create_task(self._watch("workloads", self.buckets.workloads, self._on_workload))
            group.create_task(self._watch("mesh", self.buckets.mesh_config, self._on_mesh))
            if self.state.workload_entries:
                entries = self.buckets.workload_entries
                group.create_task(self._watch("workload-entries", entries, self._on_registered))

    async def _watch(self, part: str, kv: Any, handle: Callable[[str, Any], PushRequest | None]) -> None:
        async with kv.watch() as w:
            async for ev in w:
                if ev.type is EventType.SYNCED:
                    self._synced_parts.add(part)
                    log.info("%s replayed (%d objects)", part, len(w.keys) if hasattr(w, "keys") else -1)
                    if len(self._synced_parts) == self._parts:
                        self.synced.set()
                    continue
                try:
                    req = handle(ev.key, ev.value if ev.type is EventType.PUT else None)
                except ValueError as exc:
                    log.error("ignoring %s %s: %s", part, ev.key, exc)
                    self.state.rejected[ev.key] = str(exc)
                    continue
                if req is not None and self.synced.is_set() and self.submit is not None:
                    carried = carried_context(ev.headers)
                    if carried:
                        req.traces = (carried,)
                    self.submit(req)

    def _on_config(self, key: str, value: Any) -> PushRequest | None:
        self.metrics.inbound.labels("config").inc()
        old = self.state.configs.pop(key, None)
        if value is not None and not in_revision(value, self.state.revision):
            # another revision's object: as if absent (a relabelled one leaves this revision)
            log.debug("%s: for revision %s, not %s", key, value.labels[REV_LABEL], self.state.revision)
            if old is None:
                return None
            value = None
        if value is not None:
            cfg = config_from_bus(value)
            self.state.configs[key] = cfg
            kind = cfg.kind
            if isinstance(cfg.spec, models.Telemetry):
                self._warn_not_applied(cast("Config[models.Telemetry]", cfg))
        else:
            kind = old.kind if old else ""
        self.state.rejected.pop(key, None)
        return PushRequest(full=True, kinds=frozenset({kind}), reason=(f"config:{kind}",))

    def _warn_not_applied(self, cfg: Config[models.Telemetry]) -> None:
        if unapplied := accesslog.not_applied(cfg, self.state.mesh):
            log.warning(
                "Telemetry %s/%s: accepted, not applied by meshplane: %s",
                cfg.namespace,
                cfg.name,
                ", ".join(unapplied),
            )

    def _on_mesh(self, key: str, value: Any) -> PushRequest:
        self.metrics.inbound.labels("mesh").inc()
        mesh = self.state.flag_mesh if value is None else mesh_config_from_bus(value)
        if (
            mesh.trust_domain != self.state.mesh.trust_domain
            or mesh.root_namespace != self.state.root_namespace
        ):
            log.info("MeshConfig: trustDomain %s, rootNamespace %s", mesh.trust_domain, mesh.root_namespace)
        self.state.mesh, self.state.root_namespace = mesh, mesh.root_namespace
        self.state.rejected.pop(key, None)
        return PushRequest(full=True, kinds=frozenset({"MeshConfig"}), reason=("config:MeshConfig",))

    def _on_service(self, key: str, value: Any) -> PushRequest:
        self.metrics.inbound.labels("svc").inc()
        if value is None:
            self.state.services.pop(key, None)
        else:
            self.state.services[key] = service_from_bus(value)
        return PushRequest(full=True, services_changed=True, reason=("service",))

    def _on_workload(self, key: str, value: Any) -> PushRequest:
        self.metrics.inbound.labels("eds").inc()
        old = self.state.workloads.pop(key, None)
        hosts = self.state.hosts_of(old) if old else frozenset()
        if value is not None and value.source.kind == "WorkloadEntry" and not self.state.workload_entries:
            value = None  # PILOT_ENABLE_WORKLOAD_ENTRY=false
        if value is not None:
            wl = workload_from_bus(value)
            self.state.workloads[key] = wl
            hosts |= self.state.hosts_of(wl)
        if hosts & self.state.mesh.mesh_networks.gateway_services:
            # a MeshNetworks gateway (registryServiceName) moved: every network's EDS changes
            return PushRequest(full=True, eds_hosts=hosts, reason=("endpoint", "network-gateway"))
        return PushRequest(full=False, eds_hosts=hosts, reason=("endpoint",))

    def _on_registered(self, key: str, value: Entry | None) -> PushRequest:
        self.metrics.inbound.labels("workloadentry").inc()
        self.state.put_registered(key, value)
        return PushRequest(full=True, kinds=frozenset({"WorkloadEntry"}), reason=("config:WorkloadEntry",))
