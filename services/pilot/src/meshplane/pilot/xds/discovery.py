"""The discovery server: current push context, connected proxies, and pushing to them.

``push`` (called by the debouncer) builds a new immutable push context, invalidates only what
changed in the resource cache and queues every connection; ``push_connection`` sends each
watched type that the request concerns, in the registry's push order (CDS → EDS → LDS → RDS).
Every fact about a type comes from its generator in the registry. The server's state changes
only through its methods; other modules read it through read-only properties.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

from meshplane.pilot.generators.registry import REGISTRY
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.generator import Registry, XdsGenerator
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.model.resources import Parts
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds import delta, sotw, tracing
from meshplane.pilot.xds.connection import Connection, Watched
from meshplane.pilot.xds.push_queue import PushQueue
from meshplane.pilot.xds.resources import ResourceCache

log = logging.getLogger("meshplane.pilot.push")

StateFn = Callable[[str], PushContext]


class DiscoveryServer:
    def __init__(
        self, settings: Settings, metrics: Metrics, snapshot: StateFn, generators: Registry = REGISTRY
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        #: The generators served, by type URL (every fact about a type comes from here).
        self.generators = generators
        self._snapshot = snapshot
        #: Versions carry a per-process prefix so a restarted Pilot never reuses one.
        self._prefix = f"{settings.pilot_id}-{uuid.uuid4().hex[:6]}"
        self._counter = itertools.count(1)
        self._ctx: PushContext = snapshot(self._next_version())
        self._cache = ResourceCache(generators)
        self._connections: dict[str, Connection] = {}
        self._queue = PushQueue(self.push_connection, settings.push_throttle)
        self._dirty: set[str] = set()
        #: One shared frozenset per distinct subscription (thousands of proxies ask for the same
        #: names): saves memory, and caches keyed by names compare by identity.
        self._names: dict[frozenset[str], frozenset[str]] = {}
        #: SotW subscriptions by the wire bytes of their names (see ``sotw._subscription``).
        self._by_wire: dict[bytes, tuple[frozenset[str], bytes]] = {}
        #: Delta subscription changes (names, subscribed, unsubscribed) → the shared new names: a
        #: push's new cluster makes thousands of proxies subscribe the same name on top of the same
        #: 1000 names, and copying those per proxy was most of a subscription request's cost.
        self._moves: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], frozenset[str]] = {}
        self._push_count = 0
        self._connects = 0
        self._last_push: dict[str, object] = {}

    # ---- read-only views -----------------------------------------------------------------
    @property
    def ctx(self) -> PushContext:
        """The current push context."""
        return self._ctx

    @property
    def cache(self) -> ResourceCache:
        return self._cache

    @property
    def queue(self) -> PushQueue:
        return self._queue

    @property
    def connections(self) -> Mapping[str, Connection]:
        """Open connections by connection id."""
        return self._connections

    @property
    def push_count(self) -> int:
        return self._push_count

    @property
    def connects(self) -> int:
        """Connections accepted since start."""
        return self._connects

    @property
    def last_push(self) -> Mapping[str, object]:
        """A summary of the last push (for /debug/push_status)."""
        return self._last_push

    def take_dirty(self) -> set[str]:
        """Ids of the connections whose sync state changed since the last call (now forgotten)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def mark_dirty(self, conn_ids: Iterable[str]) -> None:
        """Have ``take_dirty`` return these connection ids again."""
        self._dirty.update(conn_ids)

    def _next_version(self) -> str:
        return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}/{next(self._counter)}"

    def version_info(self) -> str:
        return f"{self._prefix}/{self._ctx.version}"

    # ---- connections -------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self._connects += 1
        self._connections[conn.id] = conn
        self.metrics.xds.set(len(self._connections))
        self._dirty.add(conn.id)

    def remove(self, conn: Connection) -> None:
        conn.closed = True
        self._connections.pop(conn.id, None)
        self.metrics.xds.set(len(self._connections))
        self._dirty.add(conn.id)

    def connections_for(self, proxy_id: str) -> list[Connection]:
        return [
            c for c in self._connections.values() if c.proxy.id == proxy_id or c.proxy.node_id == proxy_id
        ]

    def canonical(self, names: frozenset[str]) -> frozenset[str]:
        """The shared instance of a subscription's names."""
        return self._names.setdefault(names, names)

    def moved(
        self, names: frozenset[str], subscribe: frozenset[str], unsubscribe: frozenset[str]
    ) -> frozenset[str]:
        """The shared names after a Delta request subscribed and unsubscribed some of ``names``."""
        key = (names, subscribe, unsubscribe)
        found = self._moves.get(key)
        if found is None:
            found = self._moves[key] = self.canonical((names | subscribe) - unsubscribe)
        return found

    def subscription(self, wire: bytes, names: Iterable[str]) -> tuple[frozenset[str], bytes]:
        """The shared names set (and shared key) for a subscription whose names encode as ``wire``."""
        found = self._by_wire.get(wire)
        if found is None:
            found = self._by_wire[wire] = (self.canonical(frozenset(names)), wire)
        return found

    def _forget_unused_names(self) -> None:
        watched = [w for c in self._connections.values() for w in c.watched.values()]
        self._names = {w.names: w.names for w in watched}
        self._by_wire = {w.names_key: (w.names, w.names_key) for w in watched if w.names_key}
        self._moves.clear()

    # ---- pushes ------------------------------------------------------------------------
    async def push(self, req: PushRequest) -> None:
        """Rebuild the push context for ``req`` and queue every connected proxy."""
        start = time.monotonic()
        self.metrics.debounce.observe(max(start - req.start, 0.0))
        version = self._next_version()
        with tracing.push_span(req, f"{self._prefix}/{version}") as queued:
            self._push(queued, version, start)

    def _push(self, req: PushRequest, version: str, start: float) -> None:
        self._ctx = self._snapshot(version)
        if req.full:
            self._cache.clear()
            self._forget_unused_names()
        else:
            self._cache.clear_eds(req.eds_hosts)
        self.metrics.services.set(len(self._ctx.services))
        self._push_count += 1
        self._last_push = {
            "version": self.version_info(),
            "full": req.full,
            "kinds": sorted(req.kinds),
            "eds_hosts": sorted(req.eds_hosts),
            "reason": list(req.reason),
            "build_seconds": round(time.monotonic() - start, 6),
            "proxies": len(self._connections),
        }
        for conn in list(self._connections.values()):
            self._queue.enqueue(conn, req)

    @staticmethod
    def _wanted(req: PushRequest, gen: XdsGenerator) -> bool:
        return gen.needs_push(req) if req.full else gen.endpoint_driven

    async def push_connection(self, conn: Connection, req: PushRequest) -> None:
        async with conn.lock:
            conn.pushing = True
            try:
                await self._push_types(conn, req)
            finally:
                conn.pushing = False
            self._converged(conn)  # every type it was sent may already be acknowledged

    async def _push_types(self, conn: Connection, req: PushRequest) -> None:
        """Send each changed type in push order. Call with ``conn.lock`` held."""
        #: Delta: names sent per type in this push, for types re-sent with them (EDS with CDS).
        sent_by_type: dict[str, frozenset[str]] = {}
        for gen in self.generators.ordered:
            type_url = gen.type_url
            w = conn.watched.get(type_url)
            if w is None or not self._wanted(req, gen):
                continue
            if not req.full and not self._watches_any(conn, w, req):
                continue
            if w.pending_since is None:
                w.pending_since = req.start
            t0 = time.monotonic()
            nonce_before = w.nonce_sent
            if conn.delta:
                force = sent_by_type.get(gen.resend_with, frozenset()) if gen.resend_with else frozenset()
                sent_by_type[type_url] = await delta.send(self, conn, type_url, force=force)
            else:
                await sotw.send(self, conn, type_url, None if req.full else req.eds_hosts)
            tracing.remember_send(w, req, nonce_before)
            self.metrics.push_time_of[gen.short].observe(time.monotonic() - t0)

    def _watches_any(self, conn: Connection, w: Watched, req: PushRequest) -> bool:
        """Whether the proxy's subscription to an endpoint-driven type covers any host of an
        endpoint push."""
        parts = self._cache.parts(self._ctx, conn.proxy, w.type_url, w.names)
        return any(p.only(req.eds_hosts).items for p in parts)

    def parts_for(self, conn: Connection, w: Watched) -> Parts | None:
        """What ``w``'s type holds for the proxy now; None (counted and logged) when building fails."""
        try:
            return self._cache.parts(self._ctx, conn.proxy, w.type_url, None if w.wildcard else w.names)
        except Exception:
            short = self.generators[w.type_url].short
            self.metrics.pushes.labels(f"{short}_builderr").inc()
            log.exception("building %s for %s failed", short, conn.id)
            return None

    async def deliver(self, conn: Connection, w: Watched, nonce: str, version: str, data: bytes) -> bool:
        """Record and queue one serialized response; False once the stream has closed."""
        conn.sent(w, nonce, version)
        if not await conn.send(data):
            return False
        self.metrics.pushes_of[self.generators[w.type_url].short].inc()
        self._dirty.add(conn.id)
        return True

    def on_nack(self, conn: Connection, w: Watched, nonce: str, message: str) -> None:
        """The proxy rejected ``nonce``: it keeps its last good config; count and show it."""
        short = self.generators[w.type_url].short
        w.last_nack = message
        w.nacks += 1
        conn.answered(w, nonce)  # answered (rejected)
        self.metrics.rejects.labels(short).inc()
        self._dirty.add(conn.id)
        tracing.record_answer(conn, w, nonce, error=message or "NACK")
        log.warning("%s NACK from %s (nonce %s): %s", short, conn.id, nonce, message)

    def on_ack(self, conn: Connection) -> None:
        """Record convergence once every watched type is acknowledged."""
        self._dirty.add(conn.id)
        if not conn.pushing:  # mid-push, the types still to be sent are not acknowledged
            self._converged(conn)

    def _converged(self, conn: Connection) -> None:
        """Observe ``pilot_proxy_convergence_time`` once per push the proxy fully acknowledged."""
        if not conn.synced():
            return
        starts = [w.pending_since for w in conn.watched.values() if w.pending_since is not None]
        if starts:
            self.metrics.convergence.observe(time.monotonic() - min(starts))
        for w in conn.watched.values():
            w.pending_since = None
