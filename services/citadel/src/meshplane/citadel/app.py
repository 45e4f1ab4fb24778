"""Composition root: CA material → authenticators → gRPC server, monitoring, rotation, trust bundle.

With ``--workers N`` the main process is one of N serving processes: it also owns everything
that must happen once (root rotation, trust bundle publishing, the monitoring port) and starts
N-1 worker processes that serve the same gRPC port (``meshplane.citadel.workers``).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.keycert import KeyCertBundle, create_self_signed, has_material, load_bundle
from meshplane.citadel.ca.rotation import run_root_rotator, watch_ca_dir
from meshplane.citadel.grpcserver import renew_serving, settle_gc, start_grpc
from meshplane.citadel.metrics import CitadelMetrics
from meshplane.citadel.monitoring import MonitoringServer
from meshplane.citadel.server.tls import ServingCredentials
from meshplane.citadel.settings import Settings
from meshplane.citadel.trust import TrustPublisher
from meshplane.citadel.trustdomain import TrustDomain
from meshplane.citadel.workers import WorkerPool
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry import configure_metrics

log = logging.getLogger(__name__)


def prepare_authority(settings: Settings) -> LocalAuthority:
    """Load the CA from ``--ca-dir``, creating a self-signed root there on first start.

    In Kubernetes mode a self-signed root is kept in Secret ``istio-ca-secret`` (restored from it
    at start, written to it when new); a plugged-in CA in ``--ca-dir`` is used as it is.
    """

    def create() -> None:
        log.info(
            "no CA material in %s: creating a self-signed %s root", settings.ca_dir, settings.ca_key_type
        )
        create_self_signed(settings.ca_dir, settings.trust_domain, settings.ca_key_type, settings.root_ttl)

    plugged = has_material(settings.ca_dir) and not load_bundle(settings.ca_dir).self_signed
    if settings.kubernetes and not plugged:
        from meshplane.citadel.kube import CA_SECRET_NAME, restore_or_persist_ca, startup_core_api

        how = restore_or_persist_ca(startup_core_api(), settings.ca_namespace, settings.ca_dir, create)
        log.info("self-signed root %s Secret %s/%s", how, settings.ca_namespace, CA_SECRET_NAME)
    elif not has_material(settings.ca_dir):
        create()
    return LocalAuthority.load(settings.ca_dir, settings.default_ttl, settings.max_ttl, settings.sign_window)


async def run(settings: Settings, authority: LocalAuthority, stop: asyncio.Event) -> None:
    pool = WorkerPool(settings)
    metrics = CitadelMetrics(pool.counters, row=0)
    registry = CollectorRegistry()
    registry.register(metrics)
    # Background loops are supervised: a failure is logged, counted in citadel_task_failures and
    # the loop restarted with backoff; a dead worker process is counted there too (task worker-N).
    failures = TaskSupervisor.metric("citadel", registry)
    tasks = TaskSupervisor("citadel", failures, on_fatal=stop.set, stop=stop)
    configure_metrics("meshplane-citadel", registry)
    serving = ServingCredentials(authority.bundle, settings.hostnames)
    trust_domain = TrustDomain(settings.trust_domain, settings.trust_domain_pinned)
    publisher = TrustPublisher(settings.nats_url, trust_domain) if settings.nats_url else None

    def on_change(bundle: KeyCertBundle) -> None:
        metrics.root_expiry_timestamp = bundle.root.not_valid_after_utc.timestamp()
        serving.update(bundle)
        if publisher is not None:
            publisher.update(bundle)

    authority.on_change(on_change)
    on_change(authority.bundle)

    server, ports = await start_grpc(settings, authority, metrics, serving, trust_domain=trust_domain)
    try:
        await pool.start(ports)
    except BaseException:
        await server.stop(0)
        raise
    settle_gc()
    monitoring = MonitoringServer(registry, lambda: pool.alive() and tasks.running("workers"))
    mon_port = await monitoring.start(*settings.monitoring_addr)
    if publisher is not None:
        publisher.endpoints.update(
            {
                "grpc": f"{settings.grpc_addr[0]}:{ports.grpc}",
                "monitoring": f"{settings.monitoring_addr[0]}:{mon_port}",
            }
        )
    log.info(
        "serving CreateCertificate on %s:%d with %d process(es), monitoring on port %d",
        settings.grpc_addr[0],
        ports.grpc,
        settings.workers,
        mon_port,
    )
    try:
        tasks.spawn("ca-dir-watch", lambda: watch_ca_dir(authority, stop))
        tasks.spawn(
            "root-rotator",
            lambda: run_root_rotator(
                authority,
                settings.root_check_interval.total_seconds(),
                settings.root_grace_percentile,
                settings.root_ttl,
                settings.root_rotator_jitter,
                stop,
            ),
        )
        tasks.spawn("serving-cert", lambda: renew_serving(authority, serving, stop))
        tasks.spawn("workers", lambda: pool.supervise(stop, failures))
        if publisher is not None:
            tasks.spawn("trust-publisher", lambda: publisher.run(stop, tasks))
            tasks.spawn("trust-domain", lambda: trust_domain.follow(settings.nats_url, stop))
        if settings.kubernetes:
            spawn_kube_tasks(settings, authority, tasks, stop)
        await stop.wait()
    finally:
        await tasks.aclose()
        pool.terminate()
        await server.stop(grace=2.0)
        await pool.join()
        await monitoring.stop()
    tasks.raise_if_failed()


def spawn_kube_tasks(
    settings: Settings, authority: LocalAuthority, tasks: TaskSupervisor, stop: asyncio.Event
) -> None:
    from meshplane.citadel.kube import run_namespace_watch, run_root_configmap_sync

    changed = asyncio.Event()
    secret_ns = None if not authority.bundle.self_signed else settings.ca_namespace
    tasks.spawn("root-configmap", lambda: run_root_configmap_sync(authority, stop, changed, secret_ns))
    tasks.spawn("namespace-watch", lambda: run_namespace_watch(changed, stop))
