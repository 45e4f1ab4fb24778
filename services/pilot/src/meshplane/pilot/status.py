"""Publishing each connected proxy's sync state to the ``proxy_status`` bucket.

Changed proxies are written every 0.5 s (once in sync, or every 5 s while a push is still
being acknowledged, from 5 s after it went out of sync), in concurrent batches, and not while
pushes are queued or being sent (for up to 5 s): status is bookkeeping, and a push to thousands
of proxies should not share its CPU with thousands of status writes.
Every record of this replica is rewritten every ``REFRESH_SECONDS`` so readers can tell a live
Pilot's records from those of a Pilot that died without cleanup (see
:mod:`meshplane.shared.proxystatus`), and records nobody refreshed for ``GC_AFTER_SECONDS`` are
deleted (checked every ``GC_AFTER_SECONDS / 2``). On a clean stop this replica's records are
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from google.protobuf import timestamp_pb2

from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, TypedKV, make_key
from meshplane.shared.freshness import sweep_unrefreshed
from meshplane.shared.proxystatus import GC_AFTER_SECONDS, REFRESH_SECONDS

log = logging.getLogger("meshplane.pilot.status")

PUBLISH_INTERVAL = 0.5
#: concurrent puts per batch
STATUS_BATCH = 256
#: a proxy not yet in sync after a push is written at most this often, and status waits at most
#: this long for the push queue to drain
STATUS_EVERY = 5.0


class StatusPublisher:
    """Keeps this replica's proxy-status records on the bus current, and sweeps dead ones."""

    def __init__(
        self,
        buckets: Buckets,
        pilot_id: str,
        server: DiscoveryServer,
        refresh: float = REFRESH_SECONDS,
        gc_after: float = GC_AFTER_SECONDS,
    ) -> None:
        self._kv = buckets.proxy_status
        self._pilot_id = pilot_id
        self._server = server
        self._refresh = refresh
        self._gc_after = gc_after

    def _key(self, proxy_id: str) -> str:
        return make_key(self._pilot_id, proxy_id)

    async def run(self) -> None:
        """Publish changes every 0.5 s, refresh everything every ``refresh`` seconds and sweep every
        ``gc_after / 2`` (reading the whole bucket is the costly part)."""
        server = self._server
        next_refresh = time.monotonic() + self._refresh
        next_sweep = time.monotonic() + self._gc_after / 2
        last_round = 0.0
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            if server.queue.pending() and time.monotonic() - last_round < STATUS_EVERY:
                continue  # pushes come first: status waits for the push queue (5 s at most)
            last_round = time.monotonic()
            dirty = server.take_dirty()
            conns = [c for c in map(server.connections.get, dirty) if c is not None]
            now = time.monotonic()
            later = {c.id for c in conns if _later(c, now)}
            server.mark_dirty(later)
            conns = [c for c in conns if c.id not in later]
            if now >= next_refresh:  # the heartbeat: every record of this replica, in sync or not
                next_refresh = now + self._refresh
                chosen = {c.id for c in conns}
                conns += [c for c in server.connections.values() if c.id not in chosen]
            for c in conns:
                c.status_written = now
            await self._put_all(conns)
            closed = {cid.rsplit("-", 1)[0] for cid in dirty if cid not in server.connections}
            if closed:  # a proxy whose every connection closed loses its record
                live = {c.proxy.id for c in server.connections.values()}
                for gone in closed - live:
                    with contextlib.suppress(Exception):
                        await self._kv.delete(self._key(gone))
            if now >= next_sweep:
                next_sweep = now + self._gc_after / 2
                await self.sweep()

    async def _put_all(self, conns: list[Connection]) -> None:
        # One round of acknowledgements per batch (``TypedKV.put_many``); a request per record cost
        # Pilot about three times the CPU.
        for i in range(0, len(conns), STATUS_BATCH):
            batch = conns[i : i + STATUS_BATCH]
            records = [(self._key(c.proxy.id), proxy_status(self._pilot_id, c)) for c in batch]
            results = await self._kv.put_many(records)
            for exc in {repr(r) for r in results if isinstance(r, Exception)}:
                log.warning("publishing proxy status failed: %s", exc)

    async def sweep(self) -> int:
        return await sweep_stale(self._kv, self._gc_after)

    @staticmethod
    async def clear_records(buckets: Buckets, pilot_id: str, proxy_ids: list[str]) -> None:
        """On shutdown, remove this replica's proxy status records (best effort, 3 s at most)."""
        deletes = [buckets.proxy_status.delete(make_key(pilot_id, p)) for p in proxy_ids]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*deletes, return_exceptions=True), 3)


async def sweep_stale(
    kv: TypedKV[status_pb2.ProxyStatus], gc_after: float = GC_AFTER_SECONDS, now: float | None = None
) -> int:
    """Delete records no Pilot refreshed for ``gc_after`` seconds (their Pilot died); the count."""
    return await sweep_unrefreshed(kv, gc_after, now, "proxy status records")


def _later(conn: Connection, now: float) -> bool:
    """Whether to leave a changed proxy's record for a later round.

    A proxy in the middle of a push is written once it is in sync, or every 5 s while it stays out
    of sync: a push to thousands of proxies then costs one status write per proxy (the round
    after the push queue drains finds most proxies still acknowledging; writing them then would
    write each twice). A proxy never written yet (just connected) is written at once.
    """
    if conn.synced():
        conn.unsynced_seen = None
        return False
    if conn.unsynced_seen is None:
        conn.unsynced_seen = now
    if not conn.status_written:
        return False
    return now - conn.unsynced_seen < STATUS_EVERY or now - conn.status_written < STATUS_EVERY


def proxy_status(pilot_id: str, conn: Connection) -> status_pb2.ProxyStatus:
    """One proxy's record: who serves it, when it was refreshed, and each type's nonces."""
    msg = status_pb2.ProxyStatus(
        proxy_id=conn.proxy.id,
        node_id=conn.proxy.node_id,
        pilot_id=pilot_id,
        proxy_version=conn.proxy.istio_version,
        proxy_type=conn.proxy.type.value,
    )
    msg.connected_at.FromSeconds(int(conn.connected_at))
    msg.updated.CopyFrom(timestamp_pb2.Timestamp())
    msg.updated.GetCurrentTime()
    for type_url, w in sorted(conn.watched.items()):
        msg.types.add(
            type_url=type_url,
            nonce_sent=w.nonce_sent,
            nonce_acked=w.nonce_acked,
            version_sent=w.version_sent,
            version_acked=w.version_acked,
            last_nack=w.last_nack,
        )
    return msg
