"""Delta ADS: subscriptions per resource, only changed resources sent, EDS re-sent for re-sent clusters."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.generators import common
from meshplane.pilot.xds import tracing
from meshplane.pilot.xds.connection import Connection

if TYPE_CHECKING:
    from meshplane.pilot.xds.discovery import DiscoveryServer

log = logging.getLogger("meshplane.pilot.ads")

WILDCARD_TYPES = (common.CLUSTER, common.LISTENER)


async def process(
    server: DiscoveryServer, conn: Connection, req: discovery_pb2.DeltaDiscoveryRequest
) -> None:
    type_url = req.type_url
    if type_url not in common.SHORT:
        return
    short = common.SHORT[type_url]
    first = type_url not in conn.watched
    w = conn.watch(type_url)
    if req.HasField("error_detail"):
        w.last_nack = req.error_detail.message
        w.nacks += 1
        w.nonce_acked = req.response_nonce
        server.metrics.rejects.labels(short).inc()
        server.dirty.add(conn.id)
        tracing.record_answer(conn, w, req.response_nonce, error=w.last_nack or "NACK")
        log.warning("%s NACK from %s (nonce %s): %s", short, conn.id, req.response_nonce, w.last_nack)
        return
    if req.response_nonce:
        if req.response_nonce == w.nonce_sent:
            w.nonce_acked = req.response_nonce
            w.version_acked = w.version_sent
            w.last_nack = ""
            tracing.record_answer(conn, w, req.response_nonce)
            server.on_ack(conn)
        else:
            server.metrics.expired_nonce.labels(short).inc()
    subscribe = {sys.intern(n) for n in req.resource_names_subscribe}
    unsubscribe = set(req.resource_names_unsubscribe)
    if first:
        w.wildcard = type_url in WILDCARD_TYPES and (not subscribe or "*" in subscribe)
        w.sent_versions = dict(req.initial_resource_versions)
    subscribe.discard("*")
    if not subscribe and not unsubscribe and not first:
        return
    w.names = (w.names | subscribe) - unsubscribe
    for name in unsubscribe:
        w.sent_versions.pop(name, None)
    async with conn.lock:
        await send(server, conn, type_url, always=first, only=frozenset(subscribe) if not first else None)


async def send(
    server: DiscoveryServer,
    conn: Connection,
    type_url: str,
    force: frozenset[str] = frozenset(),
    always: bool = False,
    only: frozenset[str] | None = None,
) -> frozenset[str]:
    """Send changed resources (plus ``force``); return the names sent. Call with ``conn.lock`` held."""
    w = conn.watch(type_url)
    short = common.SHORT[type_url]
    try:
        resources = server.cache.generate(server.ctx, conn.proxy, type_url, None if w.wildcard else w.names)
    except Exception:
        server.metrics.pushes.labels(f"{short}_builderr").inc()
        log.exception("building %s for %s failed", short, conn.id)
        return frozenset()
    changed = [
        r
        for name, r in resources.items()
        if (only is None or name in only or name in force)
        and (w.sent_versions.get(name) != r.version or name in force or (only is not None and name in only))
    ]
    removed = [n for n in w.sent_versions if n not in resources] if w.wildcard else []
    if not changed and not removed and not always:
        return frozenset()
    head = discovery_pb2.DeltaDiscoveryResponse(
        type_url=type_url,
        system_version_info=server.version_info(),
        nonce=conn.next_nonce(),
        removed_resources=removed,
    )
    for r in changed:
        w.sent_versions[r.name] = r.version
    for n in removed:
        w.sent_versions.pop(n, None)
    w.nonce_sent = head.nonce
    w.version_sent = head.system_version_info
    if not await conn.send(b"".join(r.delta_wire for r in changed) + head.SerializeToString()):
        return frozenset()
    server.metrics.pushes.labels(short).inc()
    server.dirty.add(conn.id)
    return frozenset(r.name for r in changed)
