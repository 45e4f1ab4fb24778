"""Connection to the NATS bus and reliable publishing.

``Bus`` owns one NATS connection that reconnects forever. ``publish`` waits for JetStream's
acknowledgement and retries with jittered backoff until ``publish_deadline``; when the server
cannot be reached in time it raises :class:`BusUnavailable`, never drops silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError

from meshplane.shared.bus.errors import BusUnavailable, ValueTooLarge
from meshplane.shared.bus.tracing import inject_headers
from meshplane.shared.retry import RetriesExhausted, RetryPolicy, retry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a bus operation raises while the server is away or slow (nats-py's errors, timeouts, sockets):
#: worth retrying. Anything else (a value too large, a bad key, a bug) is not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError)

#: Largest value stored under one key. NATS's default max_payload is 1 MiB; staying well
#: under it leaves room for headers and means no single object can exhaust it.
MAX_VALUE_BYTES = 900 * 1024


@dataclass(frozen=True, slots=True)
class BusOptions:
    """How to connect and how hard to try."""

    url: str = "nats://127.0.0.1:4222"
    name: str = "meshplane"
    #: Give up on one publish (all retries) after this many seconds.
    publish_deadline: float = 10.0
    #: Wait this long for one JetStream acknowledgement.
    ack_timeout: float = 2.0
    #: How long to wait for the first connection.
    connect_timeout: float = 10.0
    #: KV buckets are created with this storage ("file" keeps state across server restarts).
    storage: str = "file"


async def _connect(
    opts: BusOptions,
    on_reconnect: Callable[[], Awaitable[None]],
    on_disconnect: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
) -> NATS:
    nc = NATS()
    await nc.connect(
        opts.url,
        name=opts.name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,  # type: ignore[arg-type]  # nats-py annotates int, accepts float
        connect_timeout=2,
        allow_reconnect=True,
        reconnected_cb=on_reconnect,
        disconnected_cb=on_disconnect,
        error_cb=on_error,
    )
    return nc


async def bounded(aw: Awaitable[T], timeout: float) -> T:
    """Await ``aw`` for at most ``timeout`` seconds, then give up on it without waiting.

    ``asyncio.wait_for`` waits for the cancelled operation to finish, and nats.py swallows
    cancellation in its flush path (``_flush_pending``), which can leave ``wait_for`` hanging
    while the connection is down. Here a timed-out operation is cancelled and abandoned.
    """
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_consume_result)
        raise TimeoutError(f"gave up after {timeout:.1f}s")
    return task.result()


def _consume_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Bus:
    """One NATS connection shared by all KV views of a process.

    Use as ``async with await Bus.connect(opts) as bus:``; every method is safe to call from
    many tasks at once.
    """

    def __init__(self, nc: NATS, opts: BusOptions) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=opts.ack_timeout)
        self.opts = opts
        self._reconnect_listeners: list[Callable[[], Awaitable[None]]] = []
        self._buckets: set[str] = set()
        #: Set by :meth:`close`: the disconnect that follows is ours, not a fault.
        self._closing = False

    @classmethod
    async def connect(cls, opts: BusOptions | None = None) -> Bus:
        """Connect (retrying until ``opts.connect_timeout``) and return a Bus.

        nats-py itself retries a refused first connection (``max_reconnect_attempts=-1``, every
        ``reconnect_time_wait``) until the deadline cancels it; the retry here covers errors it
        raises at once. The error on giving up counts nats-py's own attempts (each reported to
        ``on_error``) and names the last one's error, not only the deadline's timeout. Once
        connected, the connection reconnects forever (same settings).
        """
        opts = opts or BusOptions()
        holder: list[Bus] = []
        failures = 0  # nats-py's failed first-connection attempts, and the last one's error
        last_failure: Exception | None = None

        async def on_reconnect() -> None:
            if holder:
                await holder[0]._notify_reconnect()

        async def on_disconnect() -> None:
            if holder and holder[0]._closing:  # our own close(): expected, not worth a warning
                log.debug("bus connection to %s closed", opts.url)
            else:
                log.warning("bus disconnected from %s", opts.url)

        async def on_error(exc: Exception) -> None:
            nonlocal failures, last_failure
            if not holder:  # still connecting
                failures, last_failure = failures + 1, exc
            log.debug("bus connection error: %s", exc)

        deadline = asyncio.get_running_loop().time() + opts.connect_timeout

        async def attempt() -> NATS:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.5)
            return await asyncio.wait_for(_connect(opts, on_reconnect, on_disconnect, on_error), remaining)

        policy = RetryPolicy(
            retry_on=TRANSIENT_ERRORS, initial=0.2, maximum=1.0, deadline=opts.connect_timeout
        )
        try:
            nc = await retry(attempt, what=f"bus connect to {opts.url}", policy=policy)
        except RetriesExhausted as exc:
            attempts = max(exc.attempts, failures + 1)  # + the attempt the deadline cut short
            cause = last_failure or exc.last_error
            raise BusUnavailable("connect", opts.url, attempts, cause) from exc.last_error
        bus = cls(nc, opts)
        holder.append(bus)
        log.info("bus connected to %s", opts.url)
        return bus

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def jetstream(self) -> JetStreamContext:
        return self._js

    @property
    def nc(self) -> NATS:
        return self._nc

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def on_reconnect(self, listener: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Call ``listener`` after every reconnect; returns a function that unregisters it."""
        self._reconnect_listeners.append(listener)
        return lambda: self._reconnect_listeners.remove(listener)

    async def _notify_reconnect(self) -> None:
        log.info("bus reconnected to %s", self.opts.url)
        for listener in list(self._reconnect_listeners):
            try:
                await listener()
            except Exception:
                log.exception("bus reconnect listener failed")

    async def ensure_bucket(self, bucket: str, *, history: int = 1) -> None:
        """Create the KV bucket if it does not exist (idempotent, retried like a publish)."""
        if bucket in self._buckets:
            return

        async def attempt() -> None:
            try:
                await self._js.key_value(bucket)
            except (BucketNotFoundError, NotFoundError):
                storage = api.StorageType.FILE if self.opts.storage == "file" else api.StorageType.MEMORY
                await self._js.create_key_value(
                    bucket=bucket, history=history, storage=storage, max_value_size=MAX_VALUE_BYTES
                )

        await self._retry("create bucket", bucket, attempt)
        self._buckets.add(bucket)

    def forget_buckets(self) -> None:
        """Forget which buckets exist (after a server lost its store)."""
        self._buckets.clear()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish to a JetStream subject and return the stream sequence it was stored at.

        The current trace context is added to ``headers``. Raises BusUnavailable when no
        acknowledgement arrives before the deadline.
        """
        if len(payload) > MAX_VALUE_BYTES:
            raise ValueTooLarge(subject, len(payload), MAX_VALUE_BYTES)
        hdrs = inject_headers(headers)
        seq = 0

        async def attempt() -> None:
            nonlocal seq
            ack = await self._js.publish(
                subject, payload, timeout=self.opts.ack_timeout, headers=hdrs or None
            )
            seq = int(ack.seq)

        await self._retry("publish", subject, attempt)
        return seq

    async def _retry(self, operation: str, subject: str, fn: Callable[[], Awaitable[Any]]) -> None:
        # The common case, one attempt that succeeds, stays outside the retry machinery: it runs
        # for every put (Pilot writes a status record per proxy), and the helper's per-call
        # objects hold reference cycles that cost Pilot ~7 KiB of memory per proxy (BENCHMARKS.md).
        try:
            await bounded(fn(), self.opts.ack_timeout * 2)
            return
        except TRANSIENT_ERRORS as exc:
            log.warning("bus %s of %s failed, retrying: %s", operation, subject, exc)

        def warn(attempt: int, exc: BaseException, _wait: float) -> None:
            log.warning("bus %s of %s failed (attempt %d), retrying: %s", operation, subject, attempt, exc)

        policy = RetryPolicy(
            retry_on=TRANSIENT_ERRORS,
            initial=0.1,
            maximum=1.0,
            jitter=0.2,
            deadline=self.opts.publish_deadline,
        )
        try:
            await retry(
                lambda: bounded(fn(), self.opts.ack_timeout * 2),
                what=f"bus {operation} of {subject}",
                policy=policy,
                stopped=lambda: self._nc.is_closed,
                on_retry=warn,
            )
        except RetriesExhausted as exc:
            attempts = exc.attempts + 1  # and the first, made before the retry helper
            log.error(
                "bus %s of %s failed after %d attempts: %s", operation, subject, attempts, exc.last_error
            )
            raise BusUnavailable(operation, subject, attempts, exc.last_error) from exc.last_error

    async def close(self) -> None:
        """Flush and close the connection (idempotent)."""
        if self._nc.is_closed:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._nc.drain(), timeout=5)
        except Exception as exc:
            log.debug("bus drain failed: %s", exc)
            try:
                await self._nc.close()
            except (OSError, nats.errors.Error) as lost:  # the connection was already gone
                log.debug("bus close: %s", lost)
