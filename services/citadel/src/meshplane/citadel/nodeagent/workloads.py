"""The workloads one agent serves: a secret cache and a rotation loop per credential.

Locally an agent serves one workload whose token is ``--token-file``. As a per-node agent (in
Kubernetes) each Envoy presents its own workload's token on its SDS streams (``authorization:
Bearer ...`` in the stream's initial metadata); the agent keeps one cache per token, so each
workload gets a certificate for *its* identity, as Citadel authenticates that token. A cache
lives while streams use it, plus a short grace so a reconnecting Envoy keeps its certificate.

A stream's token is fixed for the stream's life, but projected tokens expire (kubelet writes a
fresh one to the pod's file well before). When a stream token's ``exp`` passes, the agent ends
the streams that use it, as Istio's node agent did, so Envoy reconnects with the file's current
token and renewals keep working; a stream presenting an already expired token is refused.

A stream token is refused before any CSR when it is not a JWT, or while Citadel's refusal of it
is in its backoff (``refusals``): then its streams end with ``UNAUTHENTICATED`` and Envoy
reconnects, but Citadel sees at most one CSR for that token per backoff period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jwt

from meshplane.citadel.nodeagent.cache import SecretCache
from meshplane.citadel.nodeagent.caclient import CAClient
from meshplane.citadel.nodeagent.refusals import RefusedTokens
from meshplane.citadel.nodeagent.rotation import Rotator, Wait, stopped_within, utc_now
from meshplane.shared.tasks import TaskSupervisor

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)

DEFAULT_KEY = "default"
IDLE_GRACE_SECONDS = 30.0


class NoCredential(Exception):
    """An SDS stream carried no token and the agent has no ``--token-file``."""


@dataclass
class _Workload:
    cache: SecretCache
    stop: asyncio.Event
    task: asyncio.Task[None]
    name: str
    refs: int = 0
    idle: asyncio.TimerHandle | None = field(default=None, repr=False)
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT (unverified: Citadel authenticates it), or None if it has none."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


def is_jwt(token: str) -> bool:
    """Whether ``token`` parses as a JWT (signature unchecked: Citadel authenticates it)."""
    try:
        jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return True


#: The ``task`` label under which rotation loop failures are counted.
ROTATION = "rotation"


def rotation_task(key: str) -> str:
    """The supervised task name of the rotation loop for workload ``key``."""
    return f"rotation-{key[:16]}"


class Workloads:
    def __init__(
        self,
        client: CAClient,
        key_type: str,
        ttl: dt.timedelta,
        default_token: Callable[[], str] | None,
        idle_grace: float = IDLE_GRACE_SECONDS,
        supervisor: TaskSupervisor | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        wait: Wait = stopped_within,
        failures: Counter | None = None,
        refusals: RefusedTokens | None = None,
        rotation: bool = True,
    ) -> None:
        #: Each workload's rotation loop runs under it (a failure is logged and the loop restarted
        #: with backoff). Give it no metric: tasks come and go with tokens, so failures are counted
        #: in ``failures`` under the one label ``task="rotation"``, not one series per workload.
        self.supervisor = supervisor or TaskSupervisor("node-agent rotations")
        self._failures = failures
        self._clock = clock
        self._wait = wait
        self._client = client
        self._key_type = key_type
        self._ttl = ttl
        self._default_token = default_token
        self._idle_grace = idle_grace
        self._entries: dict[str, _Workload] = {}
        self._bus_roots: list[str] = []
        self._closing: set[asyncio.Task[None]] = set()
        self.refusals = refusals or RefusedTokens()
        #: CITADEL_ENABLE_WORKLOAD_CERT_ROTATION: False issues each certificate once
        self._rotation = rotation

    def _start(self, key: str, token: Callable[[], str]) -> _Workload:
        cache = SecretCache()
        stop = asyncio.Event()
        # A stream's token that Citadel refuses is not retried: its streams end (see _refused).
        refused = None if key == DEFAULT_KEY else (lambda reason: self._refused(key, reason))
        rotator = Rotator(
            cache,
            self._client,
            self._key_type,
            self._ttl,
            token,
            self._clock,
            self._wait,
            refused,
            self._rotation,
        )
        name = rotation_task(key)

        async def rotate() -> None:
            try:
                await rotator.run(stop)
            except Exception:
                if self._failures is not None:
                    self._failures.labels(task=ROTATION).inc()
                raise

        task = self.supervisor.spawn(name, rotate)
        entry = _Workload(cache, stop, task, name)
        self._entries[key] = entry
        return entry

    async def start_default(self) -> SecretCache | None:
        """Start the ``--token-file`` workload (kept for the agent's lifetime), if there is one."""
        if self._default_token is None:
            return None
        entry = self._start(DEFAULT_KEY, self._default_token)
        entry.refs = 1  # never released
        await entry.cache.set_bus_roots(self._bus_roots)
        return entry.cache

    async def acquire(self, token: str | None) -> tuple[str, SecretCache]:
        """The cache for a stream's token (or the default workload); release it when done."""
        if token is None:
            if DEFAULT_KEY not in self._entries:
                raise NoCredential("no workload token on the SDS stream and no --token-file")
            key = DEFAULT_KEY
        else:
            key = hashlib.sha256(token.encode()).hexdigest()
            refusal = self.refusals.refused(key)
            if refusal is not None:
                raise NoCredential(refusal)
            if not is_jwt(token):
                self.refusals.refuse(key, "the workload token on the SDS stream is not a JWT")
                raise NoCredential("the workload token on the SDS stream is not a JWT")
        exp = token_expiry(token) if token is not None else None
        if exp is not None and exp <= time.time():
            raise NoCredential("the workload token on the SDS stream has expired")
        entry = self._entries.get(key)
        if entry is None:
            entry = self._start(key, lambda: token or "")
            if exp is not None:
                entry.expiry = asyncio.get_running_loop().call_later(exp - time.time(), self._expire, key)
            await entry.cache.set_bus_roots(self._bus_roots)
            log.info("serving a new workload (token %s...)", key[:8])
        if entry.idle is not None:
            entry.idle.cancel()
            entry.idle = None
        entry.refs += 1
        return key, entry.cache

    def release(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs == 0:
            entry.idle = asyncio.get_running_loop().call_later(self._idle_grace, self._retire, key)

    def _retire(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.refs == 0:
            del self._entries[key]
            self._stop(entry)
            log.info("workload (token %s...) has no SDS streams left; stopped renewing it", key[:8])

    def _expire(self, key: str) -> None:
        """The stream token expired: end its streams (Envoy reconnects with the current token)."""
        if key not in self._entries:
            return
        self._end(key, "the workload token expired; reconnect with the current token")
        log.info("workload token %s... expired; closing its SDS streams", key[:8])

    def _refused(self, key: str, reason: str) -> None:
        """Citadel refused the stream token ``key``: back off, end its streams (Envoy reconnects)."""
        delay = self.refusals.refuse(key, "the CA refused the workload token")
        self._end(key, f"the CA refused the workload token: {reason}")
        log.warning("CA refused workload token %s...; refusing it for %.0fs: %s", key[:8], delay, reason)

    def _end(self, key: str, reason: str) -> None:
        """Stop workload ``key`` and end its streams with ``reason``."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._stop(entry)
        closing = asyncio.get_running_loop().create_task(entry.cache.close(reason))  # tracked below
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _stop(self, entry: _Workload) -> None:
        for handle in (entry.idle, entry.expiry):
            if handle is not None:
                handle.cancel()
        entry.stop.set()
        self.supervisor.discard(entry.name)

    def rotating(self, key: str = DEFAULT_KEY) -> bool:
        """Whether the rotation loop of workload ``key`` is running (not failed, not in backoff)."""
        return self.supervisor.running(rotation_task(key))

    async def set_bus_roots(self, roots: list[str]) -> None:
        self._bus_roots = list(roots)
        for entry in list(self._entries.values()):
            await entry.cache.set_bus_roots(self._bus_roots)

    async def close(self) -> None:
        for entry in self._entries.values():
            self._stop(entry)
        await asyncio.gather(*(e.task for e in self._entries.values()), return_exceptions=True)
        self._entries.clear()
