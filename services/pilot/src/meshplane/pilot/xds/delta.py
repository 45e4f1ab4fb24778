"""Delta ADS: subscriptions per resource, only changed resources sent, EDS re-sent for re-sent clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.model.resources import EMPTY, Resource, merged
from meshplane.pilot.xds import resources, tracing
from meshplane.pilot.xds.connection import Connection, Watched

if TYPE_CHECKING:
    from meshplane.pilot.xds.discovery import DiscoveryServer


def answered(server: DiscoveryServer, conn: Connection, req: discovery_pb2.DeltaDiscoveryRequest) -> bool:
    """Handle a request that only answers a response (an ACK or NACK of a watched type, no
    subscription change): most of a push's requests. True when handled; False when it needs
    ``process``. Synchronous, so the stream's reader answers it without another coroutine."""
    w = conn.watched.get(req.type_url)
    if w is None or req.resource_names_subscribe or req.resource_names_unsubscribe:
        return False
    _answer(server, conn, w, req)
    return True


def _answer(
    server: DiscoveryServer, conn: Connection, w: Watched, req: discovery_pb2.DeltaDiscoveryRequest
) -> bool:
    """Record the request's ACK or NACK, if any; True for a NACK (nothing else is done for it)."""
    nonce = req.response_nonce
    if req.HasField("error_detail"):
        server.on_nack(conn, w, nonce, req.error_detail.message)
        return True
    if nonce:
        if nonce == w.nonce_sent:
            conn.answered(w, nonce)
            w.version_acked = w.version_sent
            w.last_nack = ""
            if w.push_trace is not None:  # only a traced push leaves one
                tracing.record_answer(conn, w, nonce)
            server.on_ack(conn)
        else:
            server.metrics.expired_nonce.labels(server.generators[w.type_url].short).inc()
    return False


async def process(
    server: DiscoveryServer, conn: Connection, req: discovery_pb2.DeltaDiscoveryRequest
) -> None:
    type_url = req.type_url
    gen = server.generators.get(type_url)
    if gen is None:
        return
    first = type_url not in conn.watched
    w = conn.watch(type_url)
    if _answer(server, conn, w, req):
        return
    subscribe = set(req.resource_names_subscribe)
    unsubscribe = set(req.resource_names_unsubscribe)
    if first:
        w.wildcard = gen.wildcard and (not subscribe or "*" in subscribe)
        w.held = dict(req.initial_resource_versions)
    subscribe.discard("*")
    if not subscribe and not unsubscribe and not first:
        return
    w.names = server.moved(w.names, frozenset(subscribe), frozenset(unsubscribe))
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
    """Send what changed since the proxy's last response, plus ``force`` (names re-sent whatever
    their version) and ``only`` (names just subscribed); return the names sent.

    A proxy that holds shared parts moves to the new parts by a difference computed once for
    every proxy making the same move. Call with ``conn.lock`` held.
    """
    w = conn.watch(type_url)
    parts = server.parts_for(conn, w)
    if parts is None:
        return frozenset()
    held = w.held or (EMPTY,) * len(parts)  # holding nothing: a move shared by all
    if isinstance(held, tuple) and len(held) == len(parts):
        diffs = [server.cache.diff(h, p, w.wildcard, force) for h, p in zip(held, parts, strict=True)]
    else:
        have = held if isinstance(held, dict) else {}
        diffs = [resources.diff(have, merged(parts), w.wildcard, force)]
    named = [d.names for d in diffs if d.names]
    sent = named[0] if len(named) == 1 else frozenset().union(*named)  # shared when it can be
    extra: list[Resource] = []
    if only:
        new = merged(parts)
        extra = [new[n] for n in sorted(only) if n in new and n not in sent]
        sent = sent | {r.name for r in extra}
    removed = [n for d in diffs for n in d.removed]
    w.held = parts
    if not sent and not removed and not always:
        return frozenset()
    version = server.version_info()

    def build(nonce: str) -> bytes:
        head = discovery_pb2.DeltaDiscoveryResponse(
            type_url=type_url, system_version_info=version, nonce=nonce, removed_resources=removed
        )
        bodies = [d.body for d in diffs if d.body] + [r.delta_wire for r in extra]
        return b"".join((*bodies, head.SerializeToString()))

    # names just subscribed go with what changed; proxies asking for the same get the same bytes
    key = (type_url, version, *diffs, "subscribed", *extra) if extra else (type_url, version, *diffs)
    nonce, data = server.cache.response(key, build)
    return sent if await server.deliver(conn, w, nonce, version, data) else frozenset()
