"""Galley's composition root: wire the source, publisher, analyzers and HTTP servers, run, shut down.

Start-up: HTTP servers listen (the webhook answers at once), the bus connects, the source does
its initial load, and "ready" is logged (and ``/readyz`` turns 200) only once that load is on
the bus. Shutdown on the stop event: readiness off, HTTP servers stop, background tasks end,
the bus connection drains.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from meshplane.galley import metrics
from meshplane.galley.api.apps import create_debug_app, create_monitoring_app, create_webhook_app
from meshplane.galley.api.server import HttpServer
from meshplane.galley.api.state import GalleyState
from meshplane.galley.publish.publisher import CONFIG, MESH, SERVICES, WORKLOADS, Publisher
from meshplane.galley.registry.builder import build_registry
from meshplane.galley.settings import Settings
from meshplane.galley.sources.directory import DirectorySource
from meshplane.galley.sources.meshfile import MeshConfigFile
from meshplane.galley.sources.model import ConfigObject
from meshplane.galley.sources.seed import read_seed
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.analysis import Analysis, analyze
from meshplane.shared.analysis.runner import Options
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.config import ISTIO_GROUPS
from meshplane.shared.config.kinds import NETWORKING
from meshplane.shared.meshconfig import MeshConfig
from meshplane.shared.meshconfig_bus import KEY as MESH_KEY
from meshplane.shared.proxyconfig import ProxyConfigs
from meshplane.shared.tasks import TaskSupervisor

if TYPE_CHECKING:
    from meshplane.galley.webhookconfig import WebhookConfigController

log = logging.getLogger("meshplane.galley")


class Galley:
    """One running galley: owns its servers, bus connection, source and publisher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: what the MeshConfig gives Galley itself (followed with ``--mesh-config``)
        self.root_namespace = settings.root_namespace
        self.proxy_defaults = settings.proxy_defaults
        self.state = GalleyState(injector=settings.injector)
        self.state.proxy_configs = ProxyConfigs.build(settings.proxy_defaults, (), settings.root_namespace)
        self._objects: list[ConfigObject] | None = None
        self._analysis: Analysis | None = None
        self._last_report: tuple[str, ...] = ()
        self._publisher: Publisher | None = None

    def apply(self, objects: Iterable[ConfigObject]) -> None:
        """Take a new desired state from a source: publish config + registry, run the analyzers."""
        objs = self._objects = list(objects)
        publisher = self._publisher
        assert publisher is not None
        # Istio config and the Namespaces (their labels, under kind Namespace, group "core")
        config = {o.key: o for o in objs if o.group in ISTIO_GROUPS or (o.kind, o.group) == ("Namespace", "")}
        publisher.set_desired(CONFIG, {k: o.to_message() for k, o in config.items()})
        services, workloads = build_registry(objs, self.settings.cluster_id, self.settings.network)
        publisher.set_desired(SERVICES, services)
        publisher.set_desired(WORKLOADS, workloads)
        proxy_configs = [o.obj for o in objs if (o.kind, o.group) == ("ProxyConfig", NETWORKING)]
        self.state.proxy_configs = ProxyConfigs.build(self.proxy_defaults, proxy_configs, self.root_namespace)
        self._run_analysis(objs)

    def apply_mesh(self, mesh: MeshConfig, msg: config_pb2.ConfigResource) -> None:
        """A new valid MeshConfig: publish it, and take its root namespace and defaultConfig."""
        assert self._publisher is not None
        self._publisher.set_desired(MESH, {MESH_KEY: msg})
        changed = (mesh.root_namespace, mesh.default_config) != (self.root_namespace, self.proxy_defaults)
        self.root_namespace, self.proxy_defaults = mesh.root_namespace, mesh.default_config
        if changed and self._objects is not None:
            self.apply(self._objects)

    def _run_analysis(self, objs: list[ConfigObject]) -> None:
        mesh = {"rootNamespace": self.root_namespace}
        analysis = analyze([(o.obj, str(o.origin)) for o in objs], Options(mesh_config=mesh))
        self._analysis = analysis
        for level in ("Error", "Warning", "Info"):
            metrics.ANALYSIS_MESSAGES.labels(level).set(sum(1 for m in analysis.messages if m.level == level))
        report = tuple(str(m) for m in analysis.messages)
        if report != self._last_report:
            self._last_report = report
            for line in report:
                log.info("analysis: %s", line)
            log.info("analysis: %d message(s) for %d object(s)", len(report), len(objs))

    def _analysis_view(self) -> dict[str, Any]:
        if self._analysis is None:
            return {"messages": []}
        return self._analysis.to_dict()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        # Every background task runs under supervision: a failure is logged with its traceback,
        # counted in galley_task_failures and restarted with backoff; the HTTP servers cannot be
        # restarted in-process, so their failure ends the process non-zero (its supervisor
        # restarts it).
        inner_stop = asyncio.Event()
        tasks = TaskSupervisor("galley", metrics.TASK_FAILURES, on_fatal=stop.set, stop=stop)
        critical = ["publisher"]
        webhook = HttpServer(
            create_webhook_app(self.state, s.webhook_limits),
            *s.webhook_addr,
            name="webhook",
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
        )
        # one server for both when --debug-addr is --monitoring-addr (port 0: two of the system's choosing)
        shared = s.debug_addr == s.monitoring_addr and s.monitoring_addr[1] != 0
        monitoring = HttpServer(
            create_monitoring_app(self.state, with_debug=shared), *s.monitoring_addr, name="monitoring"
        )
        await monitoring.start(tasks)
        debug = monitoring
        if not shared:
            debug = HttpServer(create_debug_app(self.state), *s.debug_addr, name="debug")
            await debug.start(tasks)
        await webhook.start(tasks)
        self.state.tasks_running = lambda: all(tasks.running(name) for name in critical)
        bus = await Bus.connect(
            BusOptions(url=s.nats_url, name="meshplane-galley", publish_deadline=5.0, identity="galley")
        )
        publisher = self._publisher = Publisher(bus)
        announcer = ComponentAnnouncer(
            bus,
            "galley",
            {
                "webhook": f"{s.webhook_addr[0]}:{webhook.port}",
                "monitoring": f"{s.monitoring_addr[0]}:{monitoring.port}",
                "debug": f"{s.debug_addr[0]}:{debug.port}",
            },
            supervisor=tasks,
        )
        ready = asyncio.Event()
        try:
            tasks.spawn("publisher", lambda: publisher.run(inner_stop))
            if s.mesh_config is not None:
                mesh_file = MeshConfigFile(s.mesh_config, self.apply_mesh)
                mesh_file.refresh()
                tasks.spawn("mesh-config-watch", lambda: mesh_file.watch(inner_stop))
            if s.config_dir is not None:
                # What each file last published, so a file broken while galley was down keeps
                # its objects in effect (the publisher writes nothing before the first apply).
                seed = await read_seed(Buckets(bus).config, stop)
                source = DirectorySource(s.config_dir, lambda snap: self.apply(snap.values()), seed)
                self.state.sources = source.status
                self.state.analysis = self._analysis_view
                if not source.refresh():
                    self.apply([])
                tasks.spawn("directory-watch", lambda: source.watch(inner_stop))
                critical.append("directory-watch")
            else:
                # imported here: the Kubernetes client is a fifth of galley's start-up in directory mode
                from meshplane.galley.revisions import InstalledRevisions
                from meshplane.galley.sources.kubernetes import KubernetesSource, api_client

                kube_api = api_client(s.kube_api)
                self.state.revision_installed = InstalledRevisions(kube_api).installed
                kube = KubernetesSource(kube_api, self.apply, tasks=tasks)
                self.state.sources = kube.status
                self.state.analysis = self._analysis_view
                if s.mesh_config is None and s.mesh_configmap:
                    # the MeshConfig from the API (the istio ConfigMap), before the first snapshot:
                    # its rootNamespace and defaultConfig are in effect from the start
                    from meshplane.galley.sources.meshconfigmap import MeshConfigMap

                    mesh_map = MeshConfigMap(kube_api, s.namespace, s.mesh_configmap, self.apply_mesh)
                    tasks.spawn("mesh-configmap", lambda: mesh_map.run(inner_stop))
                    critical.append("mesh-configmap")
                    await mesh_map.wait_synced(stop)
                # A run that fails is restarted: it lists every resource again and re-applies.
                tasks.spawn("kubernetes-source", lambda: kube.run(inner_stop))
                critical.append("kubernetes-source")
                await kube.wait_synced(stop)
            tasks.spawn("ready", lambda: self._become_ready(publisher, announcer, stop, ready))
            if s.config_dir is None and s.tls_cert is not None:
                from meshplane.galley.webhookconfig import WebhookConfigController, ca_bundle_from

                webhook_config = WebhookConfigController(
                    kube_api, s.webhook_config_name, ca_bundle_from(s.tls_cert, s.webhook_ca_file)
                )
                tasks.spawn(
                    "webhook-config", lambda: self._reconcile_webhook(ready, webhook_config, inner_stop)
                )
                if s.injector_config_name:
                    injector_config = WebhookConfigController(
                        kube_api,
                        s.injector_config_name,
                        ca_bundle_from(s.tls_cert, s.webhook_ca_file),
                        resource="mutatingwebhookconfigurations",
                        fail_closed=False,
                    )
                    tasks.spawn(
                        "injector-config",
                        lambda: self._reconcile_webhook(ready, injector_config, inner_stop),
                    )
            await stop.wait()
            log.info("shutting down")
            self.state.ready = False
            inner_stop.set()
            await tasks.aclose()
            await webhook.stop()
            await monitoring.stop()
            if debug is not monitoring:
                await debug.stop()
        finally:
            await tasks.aclose()
            await announcer.withdraw()
            publisher.close()
            await bus.close()
        tasks.raise_if_failed()

    @staticmethod
    async def _reconcile_webhook(
        ready: asyncio.Event, controller: WebhookConfigController, stop: asyncio.Event
    ) -> None:
        """Reconcile the webhook configuration once galley is ready (as istiod does)."""
        await ready.wait()
        if not stop.is_set():
            await controller.run(stop)
        await stop.wait()

    async def _become_ready(
        self, publisher: Publisher, announcer: ComponentAnnouncer, stop: asyncio.Event, ready: asyncio.Event
    ) -> None:
        """Turn ready once the initial load is on the bus, then stay (a task that never ends)."""
        if not ready.is_set():
            synced = asyncio.ensure_future(publisher.wait_synced())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
            synced.cancel()
            stopped.cancel()
            if not stop.is_set():
                # Start-up objects (modules, schemas) never die: keep them out of future collections.
                gc.collect()
                gc.freeze()
                await announcer.announce()
                log.info("ready")
                self.state.ready = True
                ready.set()
        await stop.wait()
