"""Typed state on JetStream KV: one key per object, ``put`` / ``delete`` / ``get`` / ``watch``.

A watch yields the current state first, then :data:`EventType.SYNCED` once, then changes. It
drives its own push consumer instead of nats.py's KV watcher, because that one does not recover
reliably from a server restart (nats.py#510, nats.go#1094). Recovery works like this:

* every delivered message advances ``last_seq`` (the stream sequence);
* a missing heartbeat, a consumer-sequence gap or a reconnect recreates the consumer from
  ``last_seq + 1``, on a fresh inbox so an old consumer cannot deliver twice (a reconnect wakes
  the waiting watch at once, so changes after a server restart are not held up by the heartbeat);
* if the stream itself was recreated (a server that lost its store), the watch re-reads the
  whole bucket and emits only the difference from what it had already yielded;
* a bucket that does not exist yet, for a reader whose identity may not create it, is an empty
  state: SYNCED at once, then the writer's first keys as changes once it has created the bucket.

A view with a ``domain`` reads another cluster's bucket (its server joined to this one by a
leafnode, ``$JS.<domain>.API``) and is read-only. Its watch recovers the same way when the
leafnode drops: heartbeats stop, and the consumer is recreated, on the remote server, once the
leafnode is back (until then the attempts fail and are retried with backoff).

Events are deduplicated against the watch's own view: a PUT is yielded only when the value
differs from the last one yielded for that key, a DELETE only for a key that exists. So a
retried publish or a replay after recovery never shows up twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NotFoundError

from meshplane.shared.bus.batch import publish_many
from meshplane.shared.bus.client import TRANSIENT_ERRORS, Bus, bounded
from meshplane.shared.bus.errors import BucketMissing, BusError, InvalidKey
from meshplane.shared.bus.events import EventType as EventType
from meshplane.shared.bus.events import WatchEvent as WatchEvent
from meshplane.shared.retry import RetriesExhausted, RetryPolicy, retry

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_OP_HEADER = "KV-Operation"
_DELETE_OPS = {"DEL", "PURGE"}
#: Re-creating a watch's consumer while the server is away: 50 ms doubling to 1 s, until closed.
_CONSUMER_RETRY = RetryPolicy(retry_on=(*TRANSIENT_ERRORS, BusError), initial=0.05, maximum=1.0)


class TypedKV(Generic[M]):
    """A KV bucket whose values are protobuf messages of one type (in another cluster's JetStream
    ``domain``: a read-only view of that cluster's bucket)."""

    def __init__(self, bus: Bus, bucket: str, message_type: type[M], domain: str | None = None) -> None:
        self.bus = bus
        self.bucket = bucket
        self.message_type = message_type
        self.stream = f"KV_{bucket}"
        self.domain = domain or None

    @property
    def name(self) -> str:
        """The bucket, and its domain when it is another cluster's (for logs)."""
        return self.bucket if self.domain is None else f"{self.bucket} (domain {self.domain})"

    @property
    def js(self) -> JetStreamContext:
        return self.bus.jetstream_in(self.domain)

    async def ensure_bucket(self) -> None:
        await self.bus.ensure_bucket(self.bucket, domain=self.domain)

    def _writable(self) -> None:
        if self.domain is not None:
            raise BusError(f"{self.bucket} in domain {self.domain!r} is a read-only view of another cluster")

    def subject(self, key: str) -> str:
        if not key or key.startswith(".") or key.endswith(".") or ".." in key:
            raise InvalidKey(f"invalid key {key!r}")
        return f"$KV.{self.bucket}.{key}"

    async def put(self, key: str, value: M, headers: dict[str, str] | None = None) -> int:
        """Store ``value`` under ``key``; returns its revision (stream sequence)."""
        self._writable()
        await self.bus.ensure_bucket(self.bucket)
        return await self.bus.publish(self.subject(key), value.SerializeToString(deterministic=True), headers)

    async def put_many(self, items: Sequence[tuple[str, M]]) -> list[int | Exception]:
        """Store several keys at once (``batch.publish_many``: one round of acknowledgements); each
        one's revision, or the error that stopped it, in order. For distinct keys."""
        self._writable()
        await self.bus.ensure_bucket(self.bucket)
        return await publish_many(
            self.bus, [(self.subject(k), v.SerializeToString(deterministic=True)) for k, v in items]
        )

    async def delete(self, key: str, headers: dict[str, str] | None = None) -> int:
        """Delete ``key`` (a tombstone that watches see as DELETE); returns its revision."""
        self._writable()
        await self.bus.ensure_bucket(self.bucket)
        hdrs = dict(headers or {})
        hdrs[_OP_HEADER] = "DEL"
        return await self.bus.publish(self.subject(key), b"", hdrs)

    async def get(self, key: str) -> M | None:
        """The current value of ``key``, or None (also while its bucket does not exist yet)."""
        try:
            await self.ensure_bucket()
        except BucketMissing:
            return None
        kv = await self.js.key_value(self.bucket)
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, KeyDeletedError, NotFoundError):
            return None
        return self.message_type.FromString(entry.value or b"")

    async def items(self) -> dict[str, M]:
        """A snapshot of the whole bucket."""
        out: dict[str, M] = {}
        async with self.watch() as w:
            async for ev in w:
                if ev.type is EventType.SYNCED:
                    return out
                if ev.type is EventType.PUT and ev.value is not None:
                    out[ev.key] = ev.value
        return out

    def watch(self, heartbeat: float = 1.0) -> KVWatch[M]:
        """A watch over the whole bucket; use ``async with kv.watch() as w: async for ev in w``."""
        return KVWatch(self, heartbeat)


class KVWatch(Generic[M]):
    """Async iterator of :class:`WatchEvent` for one bucket; see the module docstring."""

    def __init__(self, kv: TypedKV[M], heartbeat: float) -> None:
        self._kv = kv
        self._bus = kv.bus
        self._hb = heartbeat
        self._view: dict[str, bytes] = {}
        self._last_seq = 0
        self._last_cseq = 0
        self._stream_created: datetime | None = None
        self._synced = False
        self._resync: dict[str, tuple[bytes, int, Mapping[str, str]]] | None = None
        self._sub: Subscription | None = None
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._consumer: str | None = None
        self._pending: deque[WatchEvent[M]] = deque()
        self._reset_requested = False
        self._closed = False
        self._unregister = self._bus.on_reconnect(self._on_reconnect)
        #: How many times the consumer was recreated (visible for tests and metrics).
        self.restarts = 0

    async def __aenter__(self) -> KVWatch[M]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[WatchEvent[M]]:
        return self

    async def _on_reconnect(self) -> None:
        self._reset_requested = True
        self._queue.put_nowait(None)  # wake a waiting __anext__ now, not at its heartbeat timeout

    @property
    def keys(self) -> frozenset[str]:
        """Keys currently present in this watch's view."""
        return frozenset(self._view)

    async def __anext__(self) -> WatchEvent[M]:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                return self._pending.popleft()
            if self._sub is None or self._reset_requested:
                await self._restart()
                continue
            assert self._sub is not None
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
                # that races the queue's answer, and then whoever cancelled this __anext__ (e.g.
                # a caller's own wait_for) waits for it forever.
                async with asyncio.timeout(self._hb * 3):
                    msg = await self._queue.get()
            except TimeoutError:
                log.info("watch %s: no heartbeat for %.1fs, recreating consumer", self._kv.name, self._hb * 3)
                self._reset_requested = True
                continue
            if msg is None or self._reset_requested:
                continue  # a reconnect: the new consumer redelivers from last_seq + 1
            await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        hdrs = dict(msg.headers or {})
        status = hdrs.get(api.Header.STATUS.value)
        if status == "100" and not msg.data:
            # Idle heartbeat or flow control request.
            if msg.reply:
                await self._bus.nc.publish(msg.reply, b"")
            stalled = hdrs.get(api.Header.CONSUMER_STALLED.value)
            if stalled:
                await self._bus.nc.publish(stalled, b"")
            last_c = hdrs.get(api.Header.LAST_CONSUMER.value)
            if last_c is not None and int(last_c) != self._last_cseq:
                log.info("watch %s: heartbeat shows a gap, recreating consumer", self._kv.name)
                self._reset_requested = True
            return
        if not msg.reply:
            return
        md = msg.metadata
        cseq, sseq, pending = md.sequence.consumer, md.sequence.stream, md.num_pending
        if cseq != self._last_cseq + 1:
            log.info("watch %s: consumer sequence gap (%d after %d)", self._kv.name, cseq, self._last_cseq)
            self._reset_requested = True
            return
        self._last_cseq = cseq
        if sseq <= self._last_seq and self._resync is None:
            return  # already seen
        self._last_seq = max(self._last_seq, sseq)
        key = msg.subject.removeprefix(f"$KV.{self._kv.bucket}.")
        deleted = hdrs.get(_OP_HEADER) in _DELETE_OPS
        if self._resync is not None:
            if deleted:
                self._resync.pop(key, None)
            else:
                self._resync[key] = (msg.data, sseq, hdrs)
            if pending == 0:
                self._finish_resync()
            return
        self._apply(key, None if deleted else msg.data, sseq, hdrs)
        if pending == 0 and not self._synced:
            self._synced = True
            self._pending.append(WatchEvent(EventType.SYNCED))

    def _apply(self, key: str, data: bytes | None, seq: int, hdrs: Mapping[str, str]) -> None:
        if data is None:
            if key in self._view:
                del self._view[key]
                self._pending.append(WatchEvent(EventType.DELETE, key, None, seq, hdrs))
            return
        if self._view.get(key) == data:
            return
        self._view[key] = data
        value = self._kv.message_type.FromString(data)
        self._pending.append(WatchEvent(EventType.PUT, key, value, seq, hdrs))

    def _finish_resync(self) -> None:
        fresh = self._resync or {}
        self._resync = None
        for key in sorted(set(self._view) - set(fresh)):
            self._apply(key, None, 0, {})
        for key, (data, seq, hdrs) in sorted(fresh.items()):
            self._apply(key, data, seq, hdrs)
        if not self._synced:
            self._synced = True
            self._pending.append(WatchEvent(EventType.SYNCED))

    async def _restart(self) -> None:
        """(Re)create the consumer, retrying with backoff until the server answers."""
        self._reset_requested = False
        await self._drop_consumer()
        if self._closed:
            return

        async def attempt() -> None:
            try:
                await self._create_consumer()
            except BucketMissing:
                if self._synced or self._resync is not None:
                    raise  # retried with backoff until the writer creates the bucket
                # Nothing written yet, by a writer that has not run: the current state is empty.
                # Say so (readers such as Pilot become ready on it), then wait for the bucket.
                log.info("watch %s: no bucket yet, waiting for its writer", self._kv.name)
                self._synced = True
                self._pending.append(WatchEvent(EventType.SYNCED))

        def note(attempt: int, exc: BaseException, _wait: float) -> None:
            # Quiet while a restarting server comes back; loud once it takes longer than that.
            level = logging.INFO if attempt < 5 else logging.WARNING
            log.log(
                level,
                "watch %s: cannot create consumer yet (attempt %d: %s); retrying",
                self._kv.name,
                attempt,
                exc,
            )
            self._bus.forget_buckets()

        try:
            await retry(
                attempt,
                what=f"watch {self._kv.name}: create consumer",
                policy=_CONSUMER_RETRY,
                stopped=lambda: self._closed,
                on_retry=note,
            )
        except RetriesExhausted:
            return  # closed while the server was away: nothing left to watch

    async def _create_consumer(self) -> None:
        js = self._kv.js
        await bounded(self._kv.ensure_bucket(), 5.0)
        si = await bounded(js.stream_info(self._kv.stream), 3.0)
        created = si.created
        resume = self._last_seq > 0 or self._stream_created is not None
        if resume and (created != self._stream_created or si.state.last_seq < self._last_seq):
            log.warning("watch %s: stream was recreated; re-reading the whole bucket", self._kv.name)
            self._resync = {}
            self._last_seq = 0
        self._stream_created = created
        cfg = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=f"$KV.{self._kv.bucket}.>",
            flow_control=True,
            idle_heartbeat=self._hb,
            mem_storage=True,
            inactive_threshold=max(30.0, self._hb * 10),
            replay_policy=api.ReplayPolicy.INSTANT,
            num_replicas=1,
        )
        if self._resync is None and (self._last_seq > 0 or self._synced):
            cfg.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            cfg.opt_start_seq = self._last_seq + 1
        inbox = self._bus.nc.new_inbox()
        # Deliveries go to a queue this watch owns (not nats.py's next_msg, whose internal task
        # can be cancelled under us on reconnect): waiting on it is cancellable and never hangs.
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await bounded(self._bus.nc.subscribe(inbox, cb=deliver), 3.0)
        cfg.deliver_subject = inbox
        try:
            # An abandoned (timed-out) creation may still finish on the server; its consumer
            # delivers to an inbox nobody reads and expires after inactive_threshold.
            info = await bounded(js.add_consumer(self._kv.stream, cfg, timeout=2), 3.0)
        except BaseException:
            with contextlib.suppress(Exception):
                await bounded(sub.unsubscribe(), 1.0)
            raise
        self._sub = sub
        self._queue = queue
        self._consumer = info.name
        self._last_cseq = 0
        self.restarts += 1
        if info.num_pending == 0:
            if self._resync is not None:
                self._finish_resync()
            elif not self._synced:
                self._synced = True
                self._pending.append(WatchEvent(EventType.SYNCED))

    async def _drop_consumer(self) -> None:
        sub, name = self._sub, self._consumer
        self._sub = self._consumer = None
        if sub is not None:
            with contextlib.suppress(Exception):
                await bounded(sub.unsubscribe(), 1.0)
        if name is not None and self._bus.connected:
            with contextlib.suppress(Exception):
                await bounded(self._kv.js.delete_consumer(self._kv.stream, name), 1.0)

    async def aclose(self) -> None:
        """Stop watching and delete the server-side consumer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            self._unregister()
        await self._drop_consumer()
