"""Make the bus buckets galley owns match the desired state; reconcile after every reconnect.

Sources only replace the desired state (:meth:`Publisher.set_desired`); one task writes the
difference. What galley believes is on the bus is re-read from the bus itself at start, after a
reconnect and after a failed write, so a NATS restart (even one that lost its store) ends with
the bus equal to the desired state: nothing lost, nothing stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from google.protobuf.message import Message
from opentelemetry import trace

from meshplane.galley import metrics
from meshplane.shared.bus import Buckets, Bus, BusError, TypedKV
from meshplane.shared.telemetry.tracing import current_headers, start_span_from_headers

log = logging.getLogger("meshplane.galley.publish")

CONFIG = "config"
SERVICES = "services"
WORKLOADS = "workloads"
MESH = "mesh"

_CONCURRENCY = 32

_tracer = trace.get_tracer("meshplane.galley")


class Publisher:
    """Owns the config, services, workloads and MeshConfig buckets; safe to call from one event loop."""

    def __init__(self, bus: Bus) -> None:
        buckets = Buckets(bus)
        self._kvs: dict[str, TypedKV[Message]] = {
            CONFIG: buckets.config,  # type: ignore[dict-item]
            SERVICES: buckets.services,  # type: ignore[dict-item]
            WORKLOADS: buckets.workloads,  # type: ignore[dict-item]
            MESH: buckets.mesh_config,  # type: ignore[dict-item]
        }
        self._desired: dict[str, dict[str, bytes]] = {name: {} for name in self._kvs}
        self._messages: dict[str, dict[str, Message]] = {name: {} for name in self._kvs}
        #: Trace context of the change that last set each key, until that key is written.
        self._traces: dict[str, dict[str, dict[str, str]]] = {name: {} for name in self._kvs}
        self._published: dict[str, dict[str, bytes]] | None = None
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._generation = 0
        self._synced_generation = -1
        #: Bumped on every reconnect: a bus read that straddles one is stale and is read again.
        self._epoch = 0
        self._unregister = bus.on_reconnect(self._on_reconnect)

    async def _on_reconnect(self) -> None:
        log.info("bus reconnected; reconciling")
        self._epoch += 1
        self._published = None
        self._dirty.set()

    def set_desired(self, bucket: str, state: Mapping[str, Message]) -> None:
        """Replace the desired content of ``bucket`` (``config``, ``services``, ``workloads`` or ``mesh``)."""
        self._messages[bucket] = dict(state)
        before = self._desired[bucket]
        self._desired[bucket] = {k: m.SerializeToString(deterministic=True) for k, m in state.items()}
        carried = current_headers()
        if carried:  # called inside a traced change: its publish spans join that trace
            traces = self._traces[bucket]
            for key in {k for k, v in self._desired[bucket].items() if before.get(k) != v} | (
                before.keys() - self._desired[bucket].keys()
            ):
                traces[key] = carried
        self._generation += 1
        self._synced.clear()
        self._dirty.set()

    async def wait_synced(self) -> None:
        """Return once everything set so far is on the bus."""
        await self._synced.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Write differences until ``stop`` is set; retries with backoff while the bus is away.

        Every (re)start re-reads the bus first, so a run restarted after a failure reconciles.
        Nothing is written before the first :meth:`set_desired` (a source still loading, or
        galley still reading what it published before, must not look like "everything deleted").
        """
        delay = 0.1
        self._published = None
        self._dirty.set()
        while not stop.is_set():
            dirty = asyncio.ensure_future(self._dirty.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({dirty, stopped}, return_when=asyncio.FIRST_COMPLETED)
            dirty.cancel()
            stopped.cancel()
            if stop.is_set():
                return
            self._dirty.clear()
            if self._generation == 0:
                continue  # no source has set a desired state yet: writing now would delete everything
            generation = self._generation
            try:
                await self._sync()
            except Exception as exc:  # BusError, timeouts, a connection closed under a watch
                level = logging.WARNING if isinstance(exc, (BusError, TimeoutError)) else logging.ERROR
                log.log(level, "bus write failed (%r); will reconcile in %.1fs", exc, delay)
                self._published = None
                self._dirty.set()
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if generation == self._generation:
                self._synced.set()

    async def _read_bus(self) -> dict[str, dict[str, bytes]]:
        metrics.BUS_RECONCILES.inc()
        out: dict[str, dict[str, bytes]] = {}
        for name, kv in self._kvs.items():
            items = await asyncio.wait_for(kv.items(), 15)
            out[name] = {k: v.SerializeToString(deterministic=True) for k, v in items.items()}
        return out

    async def _sync(self) -> None:
        while self._published is None:
            epoch = self._epoch
            seen = await self._read_bus()
            if epoch == self._epoch:
                self._published = seen
        published = self._published
        sem = asyncio.Semaphore(_CONCURRENCY)
        for name, kv in self._kvs.items():
            desired = dict(self._desired[name])
            messages = self._messages[name]
            have = published.setdefault(name, {})
            puts = [k for k, v in desired.items() if have.get(k) != v]
            deletes = [k for k in have if k not in desired]
            traces = self._traces[name]
            for stale in traces.keys() - set(puts) - set(deletes):
                del traces[stale]  # changed and changed back before it was written

            await asyncio.gather(
                *(self._put(sem, kv, have, k, messages[k], desired[k], traces) for k in puts),
                *(self._delete(sem, kv, have, k, traces) for k in deletes),
            )
            if puts or deletes:
                log.info("%s: %d put, %d deleted", kv.bucket, len(puts), len(deletes))

    @staticmethod
    async def _put(
        sem: asyncio.Semaphore,
        kv: TypedKV[Message],
        have: dict[str, bytes],
        key: str,
        msg: Message,
        value: bytes,
        traces: dict[str, dict[str, str]],
    ) -> None:
        async with sem:
            with _publish_span(kv, key, "put", traces):
                await kv.put(key, msg)
        traces.pop(key, None)
        have[key] = value
        metrics.BUS_PUBLISHED.labels(kv.bucket, "put").inc()

    @staticmethod
    async def _delete(
        sem: asyncio.Semaphore,
        kv: TypedKV[Message],
        have: dict[str, bytes],
        key: str,
        traces: dict[str, dict[str, str]],
    ) -> None:
        async with sem:
            with _publish_span(kv, key, "delete", traces):
                await kv.delete(key)
        traces.pop(key, None)
        have.pop(key, None)
        metrics.BUS_PUBLISHED.labels(kv.bucket, "delete").inc()

    def close(self) -> None:
        self._unregister()


def _publish_span(
    kv: TypedKV[Message], key: str, op: str, traces: Mapping[str, Mapping[str, str]]
) -> contextlib.AbstractContextManager[object]:
    """``galley.publish`` under the change that set ``key`` (the bus write carries its context)."""
    carried = traces.get(key)
    if not carried:
        return contextlib.nullcontext()
    attributes = {"bus.bucket": kv.bucket, "bus.key": key, "bus.operation": op}
    return start_span_from_headers(_tracer, "galley.publish", carried, attributes=attributes)
