"""meshplane-node-agent: SDS on a Unix socket for one workload (locally) or one node (Kubernetes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

import grpc
from envoy.service.secret.v3 import sds_pb2_grpc
from prometheus_client import REGISTRY

from meshplane.citadel.ca.errors import CAMaterialError
from meshplane.citadel.kube import startup_api_client
from meshplane.citadel.monitoring import MonitoringServer
from meshplane.citadel.nodeagent import metrics
from meshplane.citadel.nodeagent.caclient import CAClient, file_token
from meshplane.citadel.nodeagent.filecreds import FileCredentials
from meshplane.citadel.nodeagent.kubecreds import KubeSecrets
from meshplane.citadel.nodeagent.sds import CredentialSource, SecretDiscoveryServicer
from meshplane.citadel.nodeagent.settings import AgentSettings, parse_agent_settings
from meshplane.citadel.nodeagent.trust import follow_trust_bundle
from meshplane.citadel.nodeagent.workloads import Workloads
from meshplane.citadel.trustdomain import TrustDomain
from meshplane.shared.lifecycle import run_service
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry import configure_logging, configure_metrics, configure_tracing

log = logging.getLogger("meshplane.citadel.nodeagent")


async def serve(settings: AgentSettings, stop: asyncio.Event, kube_api: Any = None) -> None:
    """``kube_api``: a Kubernetes ``ApiClient`` for ``--credential-namespace`` (None when it is not given)."""
    client = CAClient(settings.ca_addr, settings.ca_root)
    default_token = file_token(settings.token_file) if settings.token_file else None
    # Rotation loops and the trust watch are supervised: a failure is logged, counted in
    # meshplane_nodeagent_task_failures and the loop restarted with backoff.
    tasks = TaskSupervisor("node-agent", metrics.TASK_FAILURES, on_fatal=stop.set, stop=stop)
    rotations = TaskSupervisor("node-agent", on_fatal=stop.set, stop=stop)
    workloads = Workloads(
        client,
        settings.key_type,
        settings.cert_ttl,
        default_token,
        supervisor=rotations,
        failures=metrics.TASK_FAILURES,
        rotation=settings.rotation,
    )
    if not settings.rotation:
        log.warning(
            "CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false: workload certificates are issued once and never "
            "rotated; each expires %s after issue (SECRET_TTL) and its workload's mutual TLS then fails "
            "until the workload (or this agent) restarts",
            settings.cert_ttl,
        )
    socket = settings.sds_socket
    socket.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket.unlink()  # a stale socket left by an agent that was killed
    server = grpc.aio.server()
    files = FileCredentials(settings.file_credential_dirs)
    sources: list[CredentialSource] = [files]
    secrets = None
    if settings.credential_namespace and kube_api is not None:
        secrets = KubeSecrets(kube_api, settings.credential_namespace, tasks)
        sources.append(secrets)
        log.info("serving kubernetes:// credentials from the Secrets of %s", settings.credential_namespace)
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(
        SecretDiscoveryServicer(workloads, sources), server
    )
    # One workload (--token-file): the socket is 0600, only this user (Envoy's) may dial it. Per
    # node: 0666, as Istio's node agent made it — every pod's Envoy (another user) dials it, and
    # each stream is identified by the token it carries, never by who could open the socket.
    old_umask = os.umask(0o177 if settings.token_file else 0o111)
    try:
        server.add_insecure_port(f"unix:{socket}")
        await server.start()
    finally:
        os.umask(old_umask)
    log.info("serving SDS on %s", socket)
    monitoring = MonitoringServer(REGISTRY, lambda: ready(settings, tasks, workloads))
    endpoints = {"sds": str(socket)}
    if settings.monitoring_addr is not None:
        port = await monitoring.start(*settings.monitoring_addr)
        log.info("serving /metrics on %s:%d", settings.monitoring_addr[0], port)
        endpoints["monitoring"] = f"{settings.monitoring_addr[0]}:{port}"
    try:
        await workloads.start_default()
        tasks.spawn("file-credentials", lambda: files.watch(settings.file_credential_poll, stop))
        if settings.nats_url:
            nats_url = settings.nats_url
            domain = TrustDomain(settings.trust_domain, settings.trust_domain_pinned, "node-agent")
            tasks.spawn("trust-domain", lambda: domain.follow(nats_url, stop))
            tasks.spawn(
                "trust",
                lambda: follow_trust_bundle(
                    nats_url, domain, workloads, stop, endpoints, tasks, settings.ca_root
                ),
            )
        await stop.wait()
    finally:
        if secrets is not None:
            secrets.close()
        await tasks.aclose()
        await rotations.aclose()
        await monitoring.stop()
        await server.stop(grace=1.0)
        await workloads.close()
        await client.close()
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
    tasks.raise_if_failed()
    rotations.raise_if_failed()


def ready(settings: AgentSettings, tasks: TaskSupervisor, workloads: Workloads) -> bool:
    """``/ready``: the default workload's rotation and the trust watch (when configured) are up."""
    if settings.token_file and not workloads.rotating():
        return False
    return not settings.nats_url or tasks.running("trust")


def main(argv: list[str] | None = None) -> int:
    settings = parse_agent_settings(argv)
    configure_logging()
    configure_tracing("meshplane-node-agent")
    configure_metrics("meshplane-node-agent", REGISTRY)  # process and runtime metrics
    kube_api = None
    if settings.credential_namespace:
        try:
            kube_api = startup_api_client()
        except CAMaterialError as exc:
            print(f"meshplane-node-agent: --credential-namespace: {exc}", file=sys.stderr)
            return 2

    async def run(stop: asyncio.Event) -> None:
        await serve(settings, stop, kube_api)

    return run_service("meshplane-node-agent", run)


if __name__ == "__main__":
    sys.exit(main())
