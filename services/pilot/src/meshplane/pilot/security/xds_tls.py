"""xDS over mutual TLS (Istio's port 15012 shape): Pilot's certificate, and who a proxy is.

Pilot's serving certificate is one Citadel issues for Pilot's own SPIFFE identity (from its token,
``--ca-addr/--ca-root/--token-file``), renewed at half its lifetime; or one kept in files
(``--tls-cert/--tls-key/--tls-client-ca``, e.g. a mounted Secret), re-read every
:data:`FILE_POLL` seconds. New handshakes use the new pair (gRPC's dynamic server credentials ask
for it at each handshake). A client must present a certificate chaining to the mesh root (the
root of Pilot's own chain and the root file, or ``--tls-client-ca``); without one the handshake
fails.

:func:`check_peer` is Istio's ``checkConnectionIdentity``: the proxy's namespace and (when it
names one) its service account must be those of a SPIFFE identity in its certificate, or the
stream is refused; a proxy cannot claim another namespace's or service account's config.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from cryptography import x509

from meshplane.pilot.model.proxy import Proxy
from meshplane.shared.citadelclient import (
    CitadelError,
    Credential,
    credential_from_files,
    renew_after,
    spiffe_ids,
)

log = logging.getLogger("meshplane.pilot.xds_tls")

RETRY_INITIAL = 0.5
RETRY_MAX = 10.0
FILE_POLL = 30.0

#: a new credential, or CitadelError naming what failed
Source = Callable[[], Awaitable[Credential]]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class XdsCredentials:
    """Pilot's current certificate for the ADS port, kept fresh from Citadel."""

    def __init__(
        self, source: Source, max_refresh: float | None = None, clock: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.source = source
        #: re-read at least this often (files change without notice); None: at half-life only
        self.max_refresh = max_refresh
        self.clock = clock
        self.current: Credential | None = None
        #: set when a renewed pair waits for gRPC's next handshake to pick it up
        self._pending: grpc.ServerCertificateConfiguration | None = None

    async def obtain(self, stop: asyncio.Event) -> bool:
        """Get the first certificate, retrying with backoff; False if ``stop`` came first."""
        delay = RETRY_INITIAL
        while not stop.is_set():
            try:
                cred = await self.source()
                if self.current is None or cred != self.current:
                    self._install(cred)
                return True
            except CitadelError as exc:
                log.warning("no xDS serving certificate yet (retry in %.1fs): %s", delay, exc)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, RETRY_MAX)
        return False

    async def renew_forever(self) -> None:
        """Renew at half-life; a failure is retried with backoff while the current pair serves."""
        while True:
            assert self.current is not None
            delay = renew_after(self.current, self.clock())
            await asyncio.sleep(delay if self.max_refresh is None else min(delay, self.max_refresh))
            await self.obtain(asyncio.Event())

    def _install(self, cred: Credential) -> None:
        self.current = cred
        self._pending = self._configuration()
        log.info("xDS serving certificate for %s, valid until %s", cred.spiffe_id, cred.not_after.isoformat())

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        assert self.current is not None
        return grpc.ssl_server_certificate_configuration(
            [(self.current.key_pem, self.current.chain_pem)], root_certificates=self.current.roots_pem
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at each handshake: a renewed configuration once, else None (keep)."""
        pending, self._pending = self._pending, None
        return pending

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: a client certificate chaining to the mesh root is required."""
        self._pending = None
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=True
        )


def file_source(cert: Path, key: Path, client_ca: Path) -> Source:
    async def read() -> Credential:
        return await asyncio.to_thread(credential_from_files, cert, key, client_ca)

    return read


def peer_spiffe_ids(context: grpc.aio.ServicerContext) -> list[str]:
    """The SPIFFE IDs of the client certificate gRPC verified (none on a plaintext port)."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    ids: list[str] = []
    for pem in pems:
        ids += spiffe_ids(x509.load_pem_x509_certificate(pem))
    return ids


def check_peer(ids: list[str], proxy: Proxy) -> str | None:
    """Why the proxy may not have its config (the refusal's message), or None when one of ``ids``
    is the proxy's namespace (and service account, when the proxy names one)."""
    if not ids:
        return "no SPIFFE identity in the client certificate"
    for spiffe in ids:
        parts = spiffe.removeprefix("spiffe://").split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            continue
        namespace, account = parts[2], parts[4]
        if namespace == proxy.namespace and (not proxy.service_account or account == proxy.service_account):
            return None
    claimed = f"{proxy.namespace}/{proxy.service_account or '*'}"
    return f"no identity of the client certificate ({', '.join(ids)}) matches the proxy's {claimed}"
