"""The discovery server: current push context, connected proxies, and pushing to them.

``push`` (called by the debouncer) builds a new immutable push context, invalidates only what
changed in the resource cache and queues every connection; ``push_connection`` sends each
watched type that the request concerns, in CDS → EDS → LDS → RDS order.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable

from meshplane.pilot.generators import clusters, common, endpoints, listeners, routes
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds import delta, sotw, tracing
from meshplane.pilot.xds.connection import Connection, Watched
from meshplane.pilot.xds.push_queue import PushQueue
from meshplane.pilot.xds.resources import Parts, ResourceCache

log = logging.getLogger("meshplane.pilot.push")

StateFn = Callable[[str], PushContext]

_NEEDS_PUSH = {
    common.CLUSTER: clusters.needs_push,
    common.ENDPOINT: endpoints.needs_push,
    common.LISTENER: listeners.needs_push,
    common.ROUTE: routes.needs_push,
}


class DiscoveryServer:
    def __init__(self, settings: Settings, metrics: Metrics, snapshot: StateFn) -> None:
        self.settings = settings
        self.metrics = metrics
        self._snapshot = snapshot
        #: Versions carry a per-process prefix so a restarted Pilot never reuses one.
        self.prefix = f"{settings.pilot_id}-{uuid.uuid4().hex[:6]}"
        self._counter = itertools.count(1)
        self.ctx: PushContext = snapshot(self._next_version())
        self.cache = ResourceCache()
        self.connections: dict[str, Connection] = {}
        self.queue = PushQueue(self.push_connection, settings.push_throttle)
        self.dirty: set[str] = set()
        #: One shared frozenset per distinct subscription (thousands of proxies ask for the same
        #: names): saves memory, and caches keyed by names compare by identity.
        self._names: dict[frozenset[str], frozenset[str]] = {}
        #: SotW subscriptions by the wire bytes of their names (see ``sotw._subscription``).
        self._by_wire: dict[bytes, tuple[frozenset[str], bytes]] = {}
        self.push_count = 0
        self.connects = 0
        self.last_push: dict[str, object] = {}

    def _next_version(self) -> str:
        return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}/{next(self._counter)}"

    def version_info(self) -> str:
        return f"{self.prefix}/{self.ctx.version}"

    # ---- connections -------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self.connects += 1
        self.connections[conn.id] = conn
        self.metrics.xds.set(len(self.connections))
        self.dirty.add(conn.id)

    def remove(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.pop(conn.id, None)
        self.metrics.xds.set(len(self.connections))
        self.dirty.add(conn.id)

    def connections_for(self, proxy_id: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.proxy.id == proxy_id or c.proxy.node_id == proxy_id]

    def canonical(self, names: frozenset[str]) -> frozenset[str]:
        """The shared instance of a subscription's names."""
        return self._names.setdefault(names, names)

    def subscription(self, wire: bytes, names: Iterable[str]) -> tuple[frozenset[str], bytes]:
        """The shared names set (and shared key) for a subscription whose names encode as ``wire``."""
        found = self._by_wire.get(wire)
        if found is None:
            found = self._by_wire[wire] = (self.canonical(frozenset(names)), wire)
        return found

    def _forget_unused_names(self) -> None:
        watched = [w for c in self.connections.values() for w in c.watched.values()]
        self._names = {w.names: w.names for w in watched}
        self._by_wire = {w.names_key: (w.names, w.names_key) for w in watched if w.names_key}

    # ---- pushes ------------------------------------------------------------------------
    async def push(self, req: PushRequest) -> None:
        """Rebuild the push context for ``req`` and queue every connected proxy."""
        start = time.monotonic()
        self.metrics.debounce.observe(max(start - req.start, 0.0))
        version = self._next_version()
        with tracing.push_span(req, f"{self.prefix}/{version}") as queued:
            self._push(queued, version, start)

    def _push(self, req: PushRequest, version: str, start: float) -> None:
        self.ctx = self._snapshot(version)
        if req.full:
            self.cache.clear()
            self._forget_unused_names()
        else:
            self.cache.clear_eds(req.eds_hosts)
        self.metrics.services.set(len(self.ctx.services))
        self.push_count += 1
        self.last_push = {
            "version": self.version_info(),
            "full": req.full,
            "kinds": sorted(req.kinds),
            "eds_hosts": sorted(req.eds_hosts),
            "reason": list(req.reason),
            "build_seconds": round(time.monotonic() - start, 6),
            "proxies": len(self.connections),
        }
        for conn in list(self.connections.values()):
            self.queue.enqueue(conn, req)

    def _wanted(self, req: PushRequest, type_url: str) -> bool:
        if not req.full:
            return type_url == common.ENDPOINT
        return _NEEDS_PUSH[type_url](req.kinds, req.services_changed) or type_url == common.ENDPOINT

    async def push_connection(self, conn: Connection, req: PushRequest) -> None:
        async with conn.lock:
            resent: frozenset[str] = frozenset()
            for type_url in common.PUSH_ORDER:
                w = conn.watched.get(type_url)
                if w is None or not self._wanted(req, type_url):
                    continue
                if not req.full and type_url == common.ENDPOINT and not self._watches_any(conn, w, req):
                    continue
                if w.pending_since is None:
                    w.pending_since = req.start
                t0 = time.monotonic()
                nonce_before = w.nonce_sent
                if conn.delta:
                    sent = await delta.send(
                        self, conn, type_url, force=resent if type_url == common.ENDPOINT else frozenset()
                    )
                    if type_url == common.CLUSTER:
                        resent = sent
                else:
                    await sotw.send(self, conn, type_url, None if req.full else req.eds_hosts)
                tracing.remember_send(w, req, nonce_before)
                self.metrics.push_time.labels(common.SHORT[type_url]).observe(time.monotonic() - t0)

    def _watches_any(self, conn: Connection, w: Watched, req: PushRequest) -> bool:
        """Whether the proxy's EDS subscription covers any host of an endpoint push."""
        parts = self.cache.parts(self.ctx, conn.proxy, common.ENDPOINT, w.names)
        return any(p.only(req.eds_hosts).items for p in parts)

    def parts_for(self, conn: Connection, w: Watched) -> Parts | None:
        """What ``w``'s type holds for the proxy now; None (counted and logged) when building fails."""
        try:
            return self.cache.parts(self.ctx, conn.proxy, w.type_url, None if w.wildcard else w.names)
        except Exception:
            short = common.SHORT[w.type_url]
            self.metrics.pushes.labels(f"{short}_builderr").inc()
            log.exception("building %s for %s failed", short, conn.id)
            return None

    async def deliver(self, conn: Connection, w: Watched, nonce: str, version: str, data: bytes) -> bool:
        """Record and queue one serialized response; False once the stream has closed."""
        w.nonce_sent = nonce
        w.version_sent = version
        if not await conn.send(data):
            return False
        self.metrics.pushes.labels(common.SHORT[w.type_url]).inc()
        self.dirty.add(conn.id)
        return True

    def on_nack(self, conn: Connection, w: Watched, nonce: str, message: str) -> None:
        """The proxy rejected ``nonce``: it keeps its last good config; count and show it."""
        short = common.SHORT[w.type_url]
        w.last_nack = message
        w.nacks += 1
        w.nonce_acked = nonce  # answered (rejected)
        self.metrics.rejects.labels(short).inc()
        self.dirty.add(conn.id)
        tracing.record_answer(conn, w, nonce, error=message or "NACK")
        log.warning("%s NACK from %s (nonce %s): %s", short, conn.id, nonce, message)

    def on_ack(self, conn: Connection) -> None:
        """Record convergence once every watched type is acknowledged."""
        self.dirty.add(conn.id)
        if not conn.synced():
            return
        starts = [w.pending_since for w in conn.watched.values() if w.pending_since is not None]
        if starts:
            self.metrics.convergence.observe(time.monotonic() - min(starts))
        for w in conn.watched.values():
            w.pending_since = None
