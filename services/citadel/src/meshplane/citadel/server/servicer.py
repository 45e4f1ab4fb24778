"""``istio.v1.auth.IstioCertificateService``: authenticate the caller, sign its CSR for *its* identity.

Errors follow the single table in ``ca.errors``: the client sees the gRPC code and, for
authentication failures, only an opaque message; the detailed reason goes to the log.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import grpc

from meshplane.citadel.ca.authority import CertificateAuthority
from meshplane.citadel.ca.errors import AuthenticationError, CAError, grpc_code, metric_label
from meshplane.citadel.metrics import CitadelMetrics
from meshplane.citadel.server.authn import (
    Authenticator,
    Caller,
    ClientCertAuthenticator,
    certificate_not_after,
    renewal_ttl,
)
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

log = logging.getLogger(__name__)

UNAUTHENTICATED_MESSAGE = "request authenticate failure"


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    metadata = {
        k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
    }  # keys: lowercase

    def peer_cert() -> bytes | None:
        certs = (context.auth_context() or {}).get("x509_pem_cert") or []
        return certs[0] if certs else None

    return Caller(metadata=metadata, peer_cert=peer_cert)


class CertificateServicer(ca_pb2_grpc.IstioCertificateServiceServicer):
    def __init__(
        self,
        authority: CertificateAuthority,
        authenticators: Sequence[Authenticator],
        metrics: CitadelMetrics,
    ) -> None:
        self._authority = authority
        self._authenticators = list(authenticators)
        self._metrics = metrics

    async def _identify(self, caller: Caller) -> tuple[str, dt.datetime | None]:
        """The caller's identity, and the expiry of the certificate it authenticated with (if so)."""
        reasons: list[str] = []
        for authenticator in self._authenticators:
            try:
                identity = await authenticator.authenticate(caller)
            except AuthenticationError as exc:
                reasons.append(str(exc))
                continue
            if identity is not None:
                by_certificate = isinstance(authenticator, ClientCertAuthenticator)
                return identity, certificate_not_after(caller) if by_certificate else None
        if not reasons:
            reasons.append("no credential: neither a client certificate nor a known bearer token")
        raise AuthenticationError("; ".join(reasons))

    async def CreateCertificate(
        self, request: ca_pb2.IstioCertificateRequest, context: grpc.aio.ServicerContext
    ) -> ca_pb2.IstioCertificateResponse:
        self._metrics.inc("csr")
        try:
            caller = caller_of(context)
            identity, presented_not_after = await self._identify(caller)
            ttl = request.validity_duration
            if presented_not_after is not None:  # a renewal never outlives the certificate presented
                ttl = renewal_ttl(ttl, presented_not_after, dt.datetime.now(dt.UTC))
            chain = await self._authority.sign(request.csr, identity, ttl)
        except CAError as exc:
            self._metrics.inc(metric_label(exc))
            peer = context.peer()
            if isinstance(exc, AuthenticationError):
                log.warning("authentication failed for %s: %s", peer, exc)
                await context.abort(grpc_code(exc), UNAUTHENTICATED_MESSAGE)
            log.warning("CSR from %s refused: %s", peer, exc)
            await context.abort(grpc_code(exc), str(exc))
        self._metrics.inc("success_cert_issuance")
        log.debug("issued certificate for %s", identity)
        return ca_pb2.IstioCertificateResponse(cert_chain=chain)
