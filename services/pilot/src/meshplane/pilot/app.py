"""Wiring: bus → state → debounce → discovery server → gRPC ADS, plus the HTTP side.

Startup order: HTTP first (``/ready`` 503), replay every bucket until SYNCED, then build the
first push context, open the gRPC port and report ready. Proxy sync state is published to the
``proxy_status`` bucket so ``meshctl proxy-status`` sees every replica (``pilot.status``).

Every long-lived task runs under a :class:`TaskSupervisor` (``pilot_task_failures{task}``). The
push loop, status publisher, JWKS refresher and memory trimmer are restarted after a failure. The
bus watcher and the HTTP servers (monitoring and the local-only debug listener,
:mod:`meshplane.pilot.debug.listeners`) are fatal: a restarted watcher would miss deletions made
while it was down, and a lost HTTP server cannot report anything, so Pilot stops and exits
non-zero for its own supervisor to restart it. ``/ready`` is 503 while the push loop is down or
its last push failed (the reason is in the body).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import logging
from collections.abc import Awaitable
from pathlib import Path

import grpc

from meshplane.pilot.debug.http import build_app
from meshplane.pilot.debug.listeners import bind_all
from meshplane.pilot.ingest.remote import RemoteClustersCollector, RemoteRegistry, RemoteWatcher
from meshplane.pilot.ingest.watcher import State, Watcher
from meshplane.pilot.memory import trim_when_idle
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.security.jwks import JwksResolver
from meshplane.pilot.security.xds_tls import FILE_POLL, XdsCredentials, file_source
from meshplane.pilot.settings import Settings
from meshplane.pilot.status import StatusPublisher
from meshplane.pilot.xds.ads import AdsServicer, add_to_server, server_options
from meshplane.pilot.xds.autoregister import AutoRegistration
from meshplane.pilot.xds.debounce import Debouncer
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.shared.bus import Buckets, Bus, BusOptions, BusUnavailable
from meshplane.shared.citadelclient import CitadelClient
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger("meshplane.pilot")
_JWKS_KINDS = frozenset({"RequestAuthentication"})


class Pilot:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.state = State(
            settings.root_namespace,
            settings.mesh,
            settings.enable_workload_entry,
            settings.health_checks,
            revision=settings.revision,
        )
        self.server: DiscoveryServer | None = None
        self.debouncer: Debouncer | None = None
        self.registration: AutoRegistration | None = None
        self.tasks = TaskSupervisor("pilot", self.metrics.task_failures)
        self.ready = False
        self.grpc_port = 0
        self.http_port = 0
        self.debug_port = 0

    def not_ready(self) -> str | None:
        """Why Pilot should not take new proxies now, or None when it is ready."""
        if not self.ready:
            return "replaying the bus"
        if not self.tasks.running("debouncer"):
            return "the push loop is down (restarting)"
        if self.debouncer is not None and self.debouncer.last_error is not None:
            return f"the last push failed ({self.debouncer.last_error}); retrying"
        return None

    def push_all(self) -> bool:
        """Queue a full push to every connected proxy (Istio's ``/debug/adsz?push=true``)."""
        if self.debouncer is None:
            return False
        self.debouncer.submit(PushRequest(full=True, services_changed=True, reason=("debug",)))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; raise :class:`TaskFailure` if a fatal task failed."""
        self.tasks.on_fatal = stop.set
        await self._run(stop)
        self.tasks.raise_if_failed()

    async def _run(self, stop: asyncio.Event) -> None:
        s = self.settings
        app = build_app(
            self.metrics, self.state, lambda: self.server, self.not_ready, self.push_all, s.cluster_id
        )
        listeners = bind_all(app, (s.http_host, s.http_port), (s.debug_host, s.debug_port))
        self.http_port = listeners[0].port
        self.debug_port = listeners[-1].port
        http_tasks = [
            self.tasks.spawn(name, listener.serve, restart=False)
            for name, listener in zip(("http", "debug-http"), listeners, strict=False)
        ]

        async def stop_http() -> None:
            for listener in listeners:
                listener.stop()
            await _bounded(asyncio.gather(*http_tasks), 3, "HTTP server stop")

        remote_bus: Bus | None = None
        try:
            bus = await Bus.connect(
                BusOptions(url=s.nats_url, name=f"meshplane-pilot-{s.pilot_id}", identity="pilot")
            )
            # remote clusters' registries on a connection of their own: its inbox is the only one
            # the federation leafnode carries, so replies to the config reads above stay here
            if s.remote_clusters:
                name = f"meshplane-pilot-{s.pilot_id}-remote"
                remote_bus = await Bus.connect(
                    BusOptions(url=s.nats_url, name=name, identity="pilot", remote=True)
                )
        except BusUnavailable as exc:
            log.error("cannot reach the bus at %s (--nats-url / NATS_URL): %s", s.nats_url, exc)
            self.tasks.begin_close()
            await stop_http()
            raise SystemExit(1) from None
        buckets = Buckets(bus)
        watcher = Watcher(buckets, self.state, self.metrics)
        self.tasks.spawn("watcher", watcher.run, restart=False)
        remotes = self._watch_remotes(remote_bus) if remote_bus is not None else []
        grpc_server: grpc.aio.Server | None = None
        announcer: ComponentAnnouncer | None = None
        try:
            await self._wait(watcher.synced, stop)
            if stop.is_set():
                return
            submit: list[Debouncer] = []

            def jwks_changed() -> None:
                for d in submit:
                    d.submit(PushRequest(full=True, kinds=_JWKS_KINDS, reason=("jwks",)))

            jwks = JwksResolver(s.jwt_refresh, jwks_changed)
            self.server = discovery = DiscoveryServer(
                s, self.metrics, lambda v: jwks.attach(self.state.snapshot(v))
            )
            self.metrics.services.set(len(self.server.ctx.services))
            status = StatusPublisher(buckets, s.pilot_id, discovery)
            self.debouncer = debouncer = Debouncer(
                lambda req: discovery.push(req),
                s.debounce_after,
                s.debounce_max,
                s.enable_eds_debounce,
                on_error=lambda _exc: self.metrics.push_context_errors.inc(),
            )
            watcher.submit = debouncer.submit
            for remote in remotes:
                remote.submit = debouncer.submit
            submit.append(debouncer)
            self.server.queue.start()
            self.tasks.spawn("debouncer", debouncer.run)
            self.tasks.spawn("status", status.run)
            self.tasks.spawn("jwks", jwks.run)
            self.tasks.spawn(
                "memory", lambda: trim_when_idle(self._activity, lambda: discovery.queue.pending() > 0)
            )
            credentials = await self._xds_credentials(stop)
            if stop.is_set():
                return
            self.registration = self._registration(buckets, credentials is not None)
            grpc_server = grpc.aio.server(options=server_options(s))
            servicer = AdsServicer(self.server, credentials is not None, self.registration)
            add_to_server(servicer, grpc_server)
            address = f"{s.grpc_host}:{s.grpc_port}"
            try:  # grpcio raises RuntimeError (older versions returned 0) when it cannot bind
                if credentials is None:
                    self.grpc_port = grpc_server.add_insecure_port(address)
                else:
                    self.grpc_port = grpc_server.add_secure_port(address, credentials.server_credentials())
            except RuntimeError:
                self.grpc_port = 0
            if not self.grpc_port:
                grpc_server = None  # never started: nothing to stop
                log.error("cannot listen on %s:%d for gRPC (--grpc-addr): taken?", s.grpc_host, s.grpc_port)
                raise SystemExit(1)
            await grpc_server.start()
            # Start-up objects (modules, the replayed state) live forever: keep them out of every
            # later collection, which otherwise walks them again and again during pushes.
            gc.collect()
            gc.freeze()
            self.ready = True
            announcer = ComponentAnnouncer(
                bus,
                "pilot",
                {
                    "xds": f"{s.grpc_host}:{self.grpc_port}",
                    "http": f"{s.http_host}:{self.http_port}",
                    "debug": f"{s.debug_host}:{self.debug_port}",
                },
                instance=s.pilot_id,
                supervisor=self.tasks,
            )
            await announcer.announce()
            log.info(
                "ready: ADS (%s) on %s:%d, monitoring on %s:%d, debug on %s:%d",
                "plaintext" if credentials is None else "mutual TLS",
                s.grpc_host,
                self.grpc_port,
                s.http_host,
                self.http_port,
                s.debug_host,
                self.debug_port,
            )
            await stop.wait()
        finally:
            self.ready = False
            self.tasks.begin_close()
            if announcer is not None:
                await announcer.withdraw()
            proxy_ids = [c.proxy.id for c in self.server.connections.values()] if self.server else []
            # every step is bounded so a stop never hangs, however many proxies are connected
            if grpc_server is not None:
                await _bounded(grpc_server.stop(grace=1.0), 5, "gRPC server stop")
            if self.server is not None:
                await _bounded(self.server.queue.stop(), 3, "push queue stop")
            await stop_http()
            await self.tasks.aclose(3)
            if self.registration is not None:  # entries left disconnected: another replica sweeps them
                self.registration.close()
            await StatusPublisher.clear_records(buckets, s.pilot_id, proxy_ids)
            await _bounded(bus.close(), 6, "bus close")
            if remote_bus is not None:
                await _bounded(remote_bus.close(), 6, "remote bus close")

    def _watch_remotes(self, bus: Bus) -> list[RemoteWatcher]:
        """Supervised watches of each ``--remote-cluster``'s registry and its staleness checks;
        Pilot's readiness waits for none of them (a remote may be unreachable for long)."""
        s = self.settings
        out = []
        interval = min(1.0, s.remote_stale_after / 4)
        for rc in s.remote_clusters:
            remote = self.state.remotes[rc.cluster_id] = RemoteRegistry(rc.cluster_id, rc.domain)
            w = RemoteWatcher(bus, remote, self.state.hosts_of, s.remote_stale_after, s.enable_workload_entry)
            self.tasks.spawn(f"remote-{rc.cluster_id}", w.run)
            self.tasks.spawn(f"remote-{rc.cluster_id}-staleness", functools.partial(w.run_checks, interval))
            out.append(w)
        if out:
            self.metrics.registry.register(RemoteClustersCollector(self.state.remotes))
            log.info(
                "cluster %s; merging the registries of %s",
                s.cluster_id,
                ", ".join(r.cluster_id for r in s.remote_clusters),
            )
        return out

    def _registration(self, buckets: Buckets, authenticated: bool) -> AutoRegistration | None:
        """VM auto-registration and health checks, unless PILOT_ENABLE_WORKLOAD_ENTRY is false."""
        s = self.settings
        if not s.enable_workload_entry:
            log.info("PILOT_ENABLE_WORKLOAD_ENTRY=false: no WorkloadEntry endpoints, no auto-registration")
            return None
        registration = AutoRegistration(
            buckets.workload_entries,
            self.state.registered,
            self.state.group,
            s.pilot_id,
            registration=s.autoregistration,
            health_checks=s.health_checks,
            validate_identity=authenticated,
            grace_period=s.workload_entry_grace_period,
            max_connection_age=s.max_connection_age,
            registry=self.metrics.registry,
        )
        if s.autoregistration:
            self.tasks.spawn("autoregistration-sweep", registration.run)
        return registration

    async def _xds_credentials(self, stop: asyncio.Event) -> XdsCredentials | None:
        """Pilot's serving certificate from Citadel or files (refreshed by a supervised task), or
        None when ADS is plaintext (``--xds-plaintext``)."""
        s = self.settings
        if s.xds_plaintext:
            log.warning("ADS is plaintext (--xds-plaintext): any client can read any proxy's config")
            return None
        if s.tls_cert:
            source = file_source(Path(s.tls_cert), Path(s.tls_key), Path(s.tls_client_ca))
            credentials = XdsCredentials(source, max_refresh=FILE_POLL)
        else:
            ttl = dt.timedelta(seconds=s.cert_ttl)
            client = CitadelClient(s.ca_addr, Path(s.ca_root), Path(s.token_file), ttl)
            credentials = XdsCredentials(client.issue)
        if not await credentials.obtain(stop):
            return None
        self.tasks.spawn("xds-certificate", credentials.renew_forever)
        return credentials

    @staticmethod
    async def _wait(event: asyncio.Event, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(event.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    def _activity(self) -> int:
        """Changes whenever proxies connect, disconnect or are pushed (for trimming memory)."""
        server = self.server
        return 0 if server is None else hash((server.push_count, len(server.connections), server.connects))


async def _bounded(aw: Awaitable[object], seconds: float, what: str) -> None:
    try:
        await asyncio.wait_for(aw, seconds)
    except (TimeoutError, asyncio.CancelledError):
        log.warning("shutdown: %s did not finish in %.0fs", what, seconds)
