"""Composition root: CA material → authenticators → gRPC server, monitoring, rotation, trust bundle."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import grpc
from prometheus_client import CollectorRegistry

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.keycert import KeyCertBundle, create_self_signed, has_material
from meshplane.citadel.ca.rotation import run_root_rotator, watch_ca_dir
from meshplane.citadel.metrics import CitadelMetrics
from meshplane.citadel.monitoring import MonitoringServer
from meshplane.citadel.server.authn import (
    Authenticator,
    ClientCertAuthenticator,
    JwtAuthenticator,
    TokenReviewAuthenticator,
)
from meshplane.citadel.server.local_issuer import ensure_local_issuer
from meshplane.citadel.server.servicer import CertificateServicer
from meshplane.citadel.server.tls import ServingCredentials
from meshplane.citadel.settings import Settings
from meshplane.citadel.trust import TrustPublisher
from meshplane.proto.istio.v1.auth import ca_pb2_grpc
from meshplane.shared.telemetry import configure_metrics

log = logging.getLogger(__name__)

SERVING_CHECK_SECONDS = 3600.0


def prepare_authority(settings: Settings) -> LocalAuthority:
    """Load the CA from ``--ca-dir``, creating a self-signed root there on first start."""
    if not has_material(settings.ca_dir):
        log.info(
            "no CA material in %s: creating a self-signed %s root", settings.ca_dir, settings.ca_key_type
        )
        create_self_signed(settings.ca_dir, settings.trust_domain, settings.ca_key_type, settings.root_ttl)
    return LocalAuthority.load(settings.ca_dir, settings.default_ttl, settings.max_ttl)


def build_authenticators(settings: Settings, authority: LocalAuthority) -> list[Authenticator]:
    issuers = dict(settings.jwt_issuers)
    if settings.local_issuer:
        issuer, jwks = ensure_local_issuer(settings.ca_dir, settings.trust_domain)
        issuers[issuer] = str(jwks)
    authenticators: list[Authenticator] = []
    if issuers:
        authenticators.append(JwtAuthenticator(issuers, settings.audiences, settings.trust_domain))
    if settings.token_review:
        from meshplane.citadel.kube import authentication_api

        authenticators.append(
            TokenReviewAuthenticator(authentication_api(), settings.audiences, settings.trust_domain)
        )
    authenticators.append(ClientCertAuthenticator(authority))  # last: reading the peer cert is costly
    return authenticators


async def _renew_serving(authority: LocalAuthority, serving: ServingCredentials, stop: asyncio.Event) -> None:
    """Re-issue Citadel's own serving certificate at half its lifetime (CA changes re-issue it too)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), SERVING_CHECK_SECONDS)
        except TimeoutError:
            if serving.due(dt.datetime.now(dt.UTC)):
                serving.update(authority.bundle)
                log.info("re-issued the serving certificate")


async def run(settings: Settings, authority: LocalAuthority, stop: asyncio.Event) -> None:
    metrics = CitadelMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    configure_metrics("meshplane-citadel", registry)
    serving = ServingCredentials(authority.bundle, settings.hostnames)
    publisher = TrustPublisher(settings.nats_url, settings.trust_domain) if settings.nats_url else None

    def on_change(bundle: KeyCertBundle) -> None:
        metrics.root_expiry_timestamp = bundle.root.not_valid_after_utc.timestamp()
        serving.update(bundle)
        if publisher is not None:
            publisher.update(bundle)

    authority.on_change(on_change)
    on_change(authority.bundle)

    server = grpc.aio.server()
    servicer = CertificateServicer(authority, build_authenticators(settings, authority), metrics)
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(servicer, server)
    host, port = settings.grpc_addr
    bound = server.add_secure_port(f"{host}:{port}", serving.credentials())
    if settings.grpc_mtls_addr is not None:
        mhost, mport = settings.grpc_mtls_addr
        server.add_secure_port(f"{mhost}:{mport}", serving.credentials(require_client_cert=True))
    await server.start()
    monitoring = MonitoringServer(registry, lambda: True)
    mon_port = await monitoring.start(*settings.monitoring_addr)
    log.info("serving CreateCertificate on %s:%d, monitoring on port %d", host, bound, mon_port)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(watch_ca_dir(authority, stop), name="ca-dir-watch")
            tg.create_task(
                run_root_rotator(
                    authority,
                    settings.root_check_interval.total_seconds(),
                    settings.root_grace_percentile,
                    settings.root_ttl,
                    settings.root_rotator_jitter,
                    stop,
                ),
                name="root-rotator",
            )
            tg.create_task(_renew_serving(authority, serving, stop), name="serving-cert")
            if publisher is not None:
                tg.create_task(publisher.run(stop), name="trust-publisher")
            if settings.kubernetes:
                from meshplane.citadel.kube import run_root_configmap_sync

                tg.create_task(run_root_configmap_sync(authority, stop), name="root-configmap")
            await stop.wait()
    finally:
        await server.stop(grace=2.0)
        await monitoring.stop()
