"""The node agent's secret cache: the workload key + chain and the trusted roots, as SDS secrets.

Concurrency: one writer (the rotation loop and the trust follower, on the event loop); any
number of SDS streams wait on :meth:`SecretCache.wait_changed` and read immutable snapshots.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

#: Istio's SDS resource names.
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


@dataclass(frozen=True, slots=True)
class WorkloadCert:
    key_pem: bytes
    #: leaf first, root last, as Citadel returned it
    chain: tuple[str, ...]
    serial: int
    not_after: dt.datetime
    received: dt.datetime

    @classmethod
    def from_chain(cls, key_pem: bytes, chain: list[str], received: dt.datetime) -> WorkloadCert:
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        return cls(key_pem, tuple(chain), leaf.serial_number, leaf.not_valid_after_utc, received)

    @property
    def version(self) -> str:
        return f"{self.serial:x}"


class SecretCache:
    def __init__(self) -> None:
        self._cert: WorkloadCert | None = None
        self._bus_roots: tuple[str, ...] = ()
        self._generation = 0
        self._changed = asyncio.Condition()
        #: why the streams using this cache must end (set once; they end and Envoy reconnects)
        self.closed: str | None = None

    @property
    def cert(self) -> WorkloadCert | None:
        return self._cert

    @property
    def generation(self) -> int:
        return self._generation

    async def _bump(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    async def set_cert(self, cert: WorkloadCert) -> None:
        self._cert = cert
        await self._bump()

    async def close(self, reason: str) -> None:
        """Tell every stream on this cache to end with ``reason``."""
        self.closed = reason
        await self._bump()

    async def set_bus_roots(self, roots: list[str]) -> None:
        if tuple(roots) != self._bus_roots:
            self._bus_roots = tuple(roots)
            await self._bump()

    async def wait_changed(self, seen: int) -> int:
        """Return the generation once it differs from ``seen``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._generation != seen)
            return self._generation

    def roots(self) -> tuple[str, ...]:
        """All roots from the bus (old and new during a rotation), else the CA response's root."""
        if self._bus_roots:
            return self._bus_roots
        if self._cert is not None:
            return (self._cert.chain[-1],)
        return ()

    def version(self, name: str) -> str | None:
        if name == WORKLOAD_SECRET:
            return self._cert.version if self._cert else None
        if name == ROOT_SECRET:
            roots = self.roots()
            return hashlib.sha256("".join(roots).encode()).hexdigest()[:16] if roots else None
        return None

    def secret(self, name: str) -> secret_pb2.Secret | None:
        """The SDS resource ``name``, or None if unknown or not available yet."""
        if name == WORKLOAD_SECRET and self._cert is not None:
            chain = "".join(self._cert.chain[:-1] if len(self._cert.chain) > 1 else self._cert.chain)
            return secret_pb2.Secret(
                name=name,
                tls_certificate=common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=chain.encode()),
                    private_key=base_pb2.DataSource(inline_bytes=self._cert.key_pem),
                ),
            )
        if name == ROOT_SECRET and self.roots():
            return secret_pb2.Secret(
                name=name,
                validation_context=common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(inline_bytes="".join(self.roots()).encode())
                ),
            )
        return None
