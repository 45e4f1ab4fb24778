"""Connection to the NATS bus and reliable publishing.

``Bus`` owns one NATS connection that reconnects forever. ``publish`` waits for JetStream's
acknowledgement and retries with jittered backoff until ``publish_deadline``; when the server
cannot be reached in time it raises :class:`BusUnavailable`, never drops silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError

from meshplane.shared.bus.errors import BucketMissing, BusUnavailable, PermissionDenied, ValueTooLarge
from meshplane.shared.bus.identities import ROLES
from meshplane.shared.bus.pki import BusCredentials
from meshplane.shared.bus.tracing import inject_headers
from meshplane.shared.retry import RetriesExhausted, RetryPolicy, retry

log = logging.getLogger(__name__)


class _SslEofNoise(logging.Filter):
    """asyncio warns "returning true from eof_received() has no effect when using ssl" whenever a
    TLS peer closes a nats-py connection (its stream protocol asks to keep the transport half-open,
    which TLS cannot do); on the bus that is every normal close, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_SslEofNoise())

T = TypeVar("T")

#: What a bus operation raises while the server is away or slow (nats-py's errors, timeouts, sockets):
#: worth retrying. Anything else (a value too large, a bad key, a bug) is not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError)

#: Largest value stored under one key. NATS's default max_payload is 1 MiB; staying well
#: under it leaves room for headers and means no single object can exhaust it.
MAX_VALUE_BYTES = 900 * 1024

#: The bus directory (``meshplane.shared.bus.pki``) a component takes its credentials from when
#: none are given explicitly: ``$MESHPLANE_BUS_DIR/<identity>/``.
BUS_DIR_ENV = "MESHPLANE_BUS_DIR"
#: The identity of a client that names none (test harnesses set it).
BUS_IDENTITY_ENV = "MESHPLANE_BUS_IDENTITY"
#: This process's own credentials directory (``ca.crt``, ``nkey.seed``; e.g. a mounted Secret).
BUS_CREDENTIALS_ENV = "MESHPLANE_BUS_CREDENTIALS"


def resolve_credentials(directory: str | None, identity: str | None) -> BusCredentials | None:
    """The credentials in ``directory`` (default ``$MESHPLANE_BUS_CREDENTIALS``: a component's own,
    e.g. a mounted Secret), else those of ``identity`` under ``$MESHPLANE_BUS_DIR``, else None (a
    plaintext, anonymous bus)."""
    identity = identity or os.environ.get(BUS_IDENTITY_ENV) or ""
    directory = directory or os.environ.get(BUS_CREDENTIALS_ENV)
    if directory:
        return BusCredentials.from_dir(directory, identity)
    root = os.environ.get(BUS_DIR_ENV)
    if not root:
        return None
    if not identity:
        raise ValueError(f"{BUS_DIR_ENV} is set but this client names no bus identity ({BUS_IDENTITY_ENV})")
    return BusCredentials.from_dir(os.path.join(root, identity), identity)


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
    #: Who connects (``meshplane.shared.bus.identities``): picks the credentials and which buckets
    #: this client may create. None: ``$MESHPLANE_BUS_IDENTITY``.
    identity: str | None = None
    #: TLS CA and nkey seed; None: found by :func:`resolve_credentials` (``$MESHPLANE_BUS_DIR``).
    credentials: BusCredentials | None = None
    #: for other clusters' buckets: the inbox a federation leafnode carries (Role.remote_inbox_prefix)
    remote: bool = False


def _tls_options(creds: BusCredentials | None, remote: bool = False) -> dict[str, Any]:
    if creds is None:
        return {}
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(creds.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    opts: dict[str, Any] = {"tls": ctx, "nkeys_seed": str(creds.seed_file)}
    r = ROLES.get(creds.identity)
    if r is not None:
        opts["inbox_prefix"] = r.remote_inbox_prefix if remote else r.inbox_prefix
    return opts


async def _connect(
    opts: BusOptions,
    on_reconnect: Callable[[], Awaitable[None]],
    on_disconnect: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
) -> NATS:
    nc = NATS()
    await nc.connect(
        opts.url,
        **_tls_options(opts.credentials, opts.remote),
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


def _violation_subject(exc: Exception) -> str | None:
    """The subject of a "Permissions Violation for Publish to ..." error from nats-server, else None."""
    text = str(exc)
    if "permissions violation for publish" not in text.lower():
        return None
    _, _, rest = text.partition(" to ")
    return rest.strip().strip("'\"").lower() or None


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


#: how often, and how far apart, :func:`within` cancels an operation that goes on regardless
CANCEL_TRIES, CANCEL_EVERY = 20, 0.25


async def within(aw: Awaitable[T], timeout: float) -> T:
    """Await ``aw`` for at most ``timeout`` seconds; on timeout, cancel it until it has ended.

    For nats-py's first connection, which retries forever (``max_reconnect_attempts=-1``) until
    cancelled. Between attempts it closes the failed one, and that close passes on a
    ``CancelledError`` that lands while it waits for its reconnection task: the cancel is lost
    and the loop carries on, so ``asyncio.wait_for`` (one cancel, then waiting for the end) never
    returned. Cancelled again, the loop ends at its next wait. Unlike :func:`bounded`, nothing is
    left running (after ``CANCEL_TRIES`` cancels it is abandoned, with a warning).
    """
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            await _cancel_until_done(task)
    if not done:
        raise TimeoutError(f"gave up after {timeout:.1f}s")
    return task.result()


async def _cancel_until_done(task: asyncio.Future[Any]) -> None:
    for _ in range(CANCEL_TRIES):
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_EVERY)
        if task.done():
            _consume_result(task)
            return
    task.add_done_callback(_consume_result)
    log.warning("an operation went on after %d cancels; abandoned", CANCEL_TRIES)


class Bus:
    """One NATS connection shared by all KV views of a process.

    Use as ``async with await Bus.connect(opts) as bus:``; every method is safe to call from
    many tasks at once.
    """

    def __init__(self, nc: NATS, opts: BusOptions) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=opts.ack_timeout)
        #: JetStream of other domains (remote clusters' servers joined by leafnodes), by domain
        self._domains: dict[str, JetStreamContext] = {}
        self.opts = opts
        self._reconnect_listeners: list[Callable[[], Awaitable[None]]] = []
        self._buckets: set[str] = set()
        #: Set by :meth:`close`: the disconnect that follows is ours, not a fault.
        self._closing = False
        #: Subjects nats-server refused us (permissions violations), so a publish fails at once.
        self._denied: set[str] = set()

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
        if opts.credentials is None:
            opts = replace(opts, credentials=resolve_credentials(None, opts.identity))
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
            denied = _violation_subject(exc)
            if denied is not None:
                if holder:
                    holder[0]._denied.add(denied)
                log.error("bus: nats-server refused to let %s publish to %s", opts.name, denied)
                return
            if not holder:  # still connecting
                failures, last_failure = failures + 1, exc
            log.debug("bus connection error: %s", exc)

        deadline = asyncio.get_running_loop().time() + opts.connect_timeout

        async def attempt() -> NATS:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.5)
            return await within(_connect(opts, on_reconnect, on_disconnect, on_error), remaining)

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

    def jetstream_in(self, domain: str | None) -> JetStreamContext:
        """JetStream of ``domain`` (another cluster's, reached over a leafnode; its API is
        ``$JS.<domain>.API``), or this server's own for None."""
        if not domain:
            return self._js
        js = self._domains.get(domain)
        if js is None:
            js = self._domains[domain] = self._nc.jetstream(domain=domain, timeout=self.opts.ack_timeout)
        return js

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

    async def ensure_bucket(self, bucket: str, *, history: int = 1, domain: str | None = None) -> None:
        """Create the KV bucket if it does not exist (idempotent, retried like a publish).

        Only the bucket's writers may create it (``identities``); for a reader a missing bucket
        raises BucketMissing (a watch reports the empty state and waits for the writer). In
        another ``domain`` nothing is ever created: its cluster's writers do that."""
        known = f"{domain}/{bucket}" if domain else bucket
        if known in self._buckets:
            return

        creds = self.opts.credentials
        owner = ROLES.get(creds.identity) if creds else None
        may_create = not domain and (owner is None or owner.may_create(bucket))
        js = self.jetstream_in(domain)

        async def attempt() -> None:
            try:
                await js.key_value(bucket)
            except (BucketNotFoundError, NotFoundError):
                if not may_create:  # a reader waits for the bucket's writer to create it
                    raise BucketMissing(bucket) from None
                storage = api.StorageType.FILE if self.opts.storage == "file" else api.StorageType.MEMORY
                await self._js.create_key_value(
                    bucket=bucket, history=history, storage=storage, max_value_size=MAX_VALUE_BYTES
                )

        await self._retry("create bucket", bucket, attempt)
        self._buckets.add(known)

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
            self._raise_if_denied(subject)
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

    def _raise_if_denied(self, subject: str) -> None:
        s = subject.lower()  # nats-py lower-cases the server's error text
        # a publish names its subject; a bucket operation its bucket (``$JS.API....KV_<bucket>``)
        denied = next((d for d in self._denied if d == s or d.endswith(f".kv_{s}")), None)
        if denied is not None:
            creds = self.opts.credentials
            raise PermissionDenied(
                creds.identity if creds else "anonymous", subject if denied == s else denied
            )

    async def close(self) -> None:
        """Flush and close the connection (idempotent)."""
        if self._nc.is_closed:
            return
        self._closing = True
        try:
            await within(self._nc.drain(), 5)  # drain, too, passes on some cancels
        except Exception as exc:
            log.debug("bus drain failed: %s", exc)
            try:
                await self._nc.close()
            # the connection was already gone; over TLS, nats-py writing its pending buffer to an
            # SSL transport the server closed raises AttributeError from asyncio's sslproto
            except (OSError, nats.errors.Error, AttributeError) as lost:
                log.debug("bus close: %s", lost)
