"""Getting and renewing the workload certificate: key made here, CSR to Citadel, rotate at half life.

The key never leaves this process except to Envoy over the SDS socket. Renewal is scheduled at
half the remaining lifetime (minus up to 10 % jitter); failures back off exponentially (with
jitter, capped) while the cached certificate keeps being served. The clock and the wait are
injectable, so tests drive rotation time instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshplane.citadel.nodeagent import metrics
from meshplane.citadel.nodeagent.cache import SecretCache, WorkloadCert
from meshplane.citadel.nodeagent.caclient import CAClient, CAClientError
from meshplane.shared.retry import RetriesExhausted, RetryPolicy, retry

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 5.0
_CSR_RETRY = RetryPolicy(retry_on=(CAClientError,), initial=BACKOFF_INITIAL, maximum=BACKOFF_MAX, jitter=0.2)


class TokenRefused(Exception):
    """Citadel refused the workload's token and the owner asked not to retry (a stream's token)."""


#: ``wait(stop, seconds)``: True once ``stop`` is set, False when ``seconds`` passed first.
Wait = Callable[[asyncio.Event, float], Awaitable[bool]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_key_and_csr(key_type: str) -> tuple[bytes, str]:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = (
        ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def refresh_delay(cert: WorkloadCert, now: dt.datetime) -> float:
    """Seconds until renewal: half of the remaining lifetime, minus up to 10 % jitter."""
    remaining = (cert.not_after - cert.received).total_seconds()
    half = remaining / 2
    target = cert.received + dt.timedelta(seconds=half - random.uniform(0, 0.1 * half))
    return max(0.0, (target - now).total_seconds())


class Rotator:
    def __init__(
        self,
        cache: SecretCache,
        client: CAClient,
        key_type: str,
        ttl: dt.timedelta,
        token: Callable[[], str],
        clock: Callable[[], dt.datetime] = utc_now,
        wait: Wait | None = None,
        refused: Callable[[str], None] | None = None,
        rotation: bool = True,
    ) -> None:
        """``refused``: called (and the loop ends) when Citadel refuses the token; None: retry.
        ``rotation`` False (``CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false``): the certificate is
        issued once and never renewed."""
        self._rotation = rotation
        self._refused = refused
        self._clock = clock
        self._wait = wait or stopped_within
        self._cache = cache
        self._client = client
        self._token = token
        self._key_type = key_type
        self._ttl = int(ttl.total_seconds())

    async def fetch(self) -> WorkloadCert:
        key_pem, csr = await asyncio.to_thread(make_key_and_csr, self._key_type)
        try:
            chain = await self._client.sign(csr, self._ttl, self._token())
        except CAClientError as exc:
            if exc.unauthenticated and self._refused is not None:
                metrics.CSR_FAILURES.inc()
                self._refused(str(exc))
                raise TokenRefused(str(exc)) from exc
            raise
        cert = WorkloadCert.from_chain(key_pem, chain, self._clock())
        await self._cache.set_cert(cert)
        metrics.certificate_received(id(self._cache), cert.not_after)
        log.info("workload certificate %s issued, expires %s", cert.version, cert.not_after.isoformat())
        return cert

    async def run(self, stop: asyncio.Event) -> None:
        async def wait(seconds: float) -> None:
            await self._wait(stop, seconds)

        def failed(_attempt: int, exc: BaseException, delay: float) -> None:
            metrics.CSR_FAILURES.inc()
            log.warning("certificate request failed (retry in %.1fs), serving the cached one: %s", delay, exc)

        while not stop.is_set():
            try:
                cert = await retry(
                    self.fetch,
                    what="workload certificate request",
                    policy=_CSR_RETRY,
                    stopped=stop.is_set,
                    on_retry=failed,
                    sleep=wait,
                )
            except RetriesExhausted:
                return  # stopped while Citadel was unreachable
            except TokenRefused:
                return  # the owner ends this workload's streams
            if not self._rotation:
                log.warning(
                    "workload certificate %s will not be rotated: it expires %s", cert.version, cert.not_after
                )
                while not await self._wait(stop, math.inf):
                    pass  # issued once (CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false): served until stopped
                return
            delay = refresh_delay(cert, self._clock())
            if delay > 0 and await self._wait(stop, delay):
                return


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` (``math.inf``: for ever) for ``stop``; True if it was set."""
    if seconds == math.inf:
        await stop.wait()
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
