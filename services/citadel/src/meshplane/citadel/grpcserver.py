"""The CreateCertificate gRPC server of one serving process: authenticators, servicer, TLS ports.

Used by the main process and by each ``--workers`` process alike. Ports are bound with
``SO_REUSEPORT`` so several processes can serve one port; the kernel spreads connections.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.metrics import CitadelMetrics
from meshplane.citadel.server.authn import (
    Authenticator,
    ClientCertAuthenticator,
    JwtAuthenticator,
    TokenReviewAuthenticator,
)
from meshplane.citadel.server.local_issuer import ISSUER_JWKS, ensure_local_issuer, local_issuer_name
from meshplane.citadel.server.servicer import CertificateServicer
from meshplane.citadel.server.tls import ServingCredentials
from meshplane.citadel.settings import Settings
from meshplane.proto.istio.v1.auth import ca_pb2_grpc

log = logging.getLogger(__name__)

SERVING_CHECK_SECONDS = 3600.0
SERVER_OPTIONS = [("grpc.so_reuseport", 1)]
#: young-generation threshold (CPython's default is 700)
GC_GEN0_THRESHOLD = 10_000

if TYPE_CHECKING:
    from meshplane.citadel.trustdomain import TrustDomain


def build_authenticators(
    settings: Settings,
    authority: LocalAuthority,
    create_local_issuer: bool = True,
    metrics: CitadelMetrics | None = None,
    trust_domain: TrustDomain | None = None,
) -> list[Authenticator]:
    """Authenticators in Istio's order. Only the main process creates (and writes) the local
    issuer's files; workers, started after it, read them."""
    issuers = dict(settings.jwt_issuers)
    domain = trust_domain if trust_domain is not None else settings.trust_domain
    if settings.local_issuer:
        if create_local_issuer:
            issuer, jwks = ensure_local_issuer(settings.ca_dir, settings.trust_domain)
        else:
            issuer, jwks = local_issuer_name(settings.trust_domain), settings.ca_dir / ISSUER_JWKS
        issuers[issuer] = str(jwks)
    authenticators: list[Authenticator] = []
    if issuers:
        authenticators.append(JwtAuthenticator(issuers, settings.audiences, domain))
    if settings.token_review:
        from meshplane.citadel.kube import authentication_api

        on_review = (lambda: metrics.inc("token_review")) if metrics is not None else (lambda: None)
        authenticators.append(
            TokenReviewAuthenticator(authentication_api(), settings.audiences, domain, on_review=on_review)
        )
    authenticators.append(ClientCertAuthenticator(authority))  # last: reading the peer cert is costly
    return authenticators


@dataclass(frozen=True, slots=True)
class BoundPorts:
    grpc: int
    mtls: int | None


async def start_grpc(
    settings: Settings,
    authority: LocalAuthority,
    metrics: CitadelMetrics,
    serving: ServingCredentials,
    worker: bool = False,
    trust_domain: TrustDomain | None = None,
) -> tuple[grpc.aio.Server, BoundPorts]:
    """Start CreateCertificate on ``--grpc-addr`` (and ``--grpc-mtls-addr``); return the bound ports."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    authenticators = build_authenticators(settings, authority, not worker, metrics, trust_domain)
    servicer = CertificateServicer(authority, authenticators, metrics)
    ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(servicer, server)
    host, port = settings.grpc_addr
    bound = server.add_secure_port(f"{host}:{port}", serving.credentials())
    mtls_bound: int | None = None
    if settings.grpc_mtls_addr is not None:
        mhost, mport = settings.grpc_mtls_addr
        mtls_bound = server.add_secure_port(f"{mhost}:{mport}", serving.credentials(require_client_cert=True))
    await server.start()
    return server, BoundPorts(bound, mtls_bound)


def settle_gc() -> None:
    """Once serving: keep start-up objects (modules, CA material) out of every later collection
    and collect the young generation less often. A CSR allocates hundreds of short-lived objects
    (gRPC calls, tasks, certificate builders); with CPython's defaults full collections over
    the start-up heap show up as multi-millisecond pauses in the tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


async def renew_serving(authority: LocalAuthority, serving: ServingCredentials, stop: asyncio.Event) -> None:
    """Re-issue this process's serving certificate at half its lifetime (CA changes re-issue it too)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), SERVING_CHECK_SECONDS)
        except TimeoutError:
            if serving.due(dt.datetime.now(dt.UTC)):
                serving.update(authority.bundle)
                log.info("re-issued the serving certificate")
