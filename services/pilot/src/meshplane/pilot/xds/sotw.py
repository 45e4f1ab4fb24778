"""State-of-the-world ADS: request classification (initial, ACK, NACK, stale) and full responses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.xds import tracing
from meshplane.pilot.xds.connection import Connection, Watched

if TYPE_CHECKING:
    from meshplane.pilot.xds.discovery import DiscoveryServer

log = logging.getLogger("meshplane.pilot.ads")


async def process(server: DiscoveryServer, conn: Connection, req: discovery_pb2.DiscoveryRequest) -> None:
    """Handle one request; respond only when the proxy asks for something new."""
    type_url = req.type_url
    gen = server.generators.get(type_url)
    if gen is None:
        log.debug("ignoring unsupported type %s from %s", type_url, conn.id)
        return
    w = conn.watch(type_url)
    nonce, version = req.response_nonce, req.version_info
    if req.HasField("error_detail"):
        if nonce and nonce != w.nonce_sent:
            return
        w.version_acked = version  # the version Envoy keeps
        server.on_nack(conn, w, nonce, req.error_detail.message)
        return
    if not nonce:
        w.names, w.names_key = _subscription(server, w, req)
        w.wildcard = gen.wildcard and not w.names
        async with conn.lock:
            await send(server, conn, type_url)
        return
    if nonce != w.nonce_sent:
        server.metrics.expired_nonce.labels(gen.short).inc()
        return
    conn.answered(w, nonce)
    w.version_acked = version
    w.last_nack = ""
    tracing.record_answer(conn, w, nonce)
    server.on_ack(conn)
    if w.wildcard:
        return
    names, key = _subscription(server, w, req)
    if names is not w.names:
        w.names, w.names_key = names, key
        async with conn.lock:
            await send(server, conn, type_url)


def _subscription(
    server: DiscoveryServer, w: Watched, req: discovery_pb2.DiscoveryRequest
) -> tuple[frozenset[str], bytes]:
    """The request's resource names as the shared set, and the wire form that identifies them.

    SotW repeats every name in every ACK (a thousand EDS names, say). Turning them into Python
    strings costs more than the rest of the ACK, so the names' wire bytes are compared first:
    unchanged names (nearly every ACK) are recognised without building a string. The request
    is consumed: every other field is cleared.
    """
    for name in ("version_info", "node", "type_url", "response_nonce", "error_detail"):
        req.ClearField(name)
    key = req.SerializeToString()
    if key == w.names_key:
        return w.names, w.names_key
    return server.subscription(key, req.resource_names)


async def send(
    server: DiscoveryServer, conn: Connection, type_url: str, hosts: frozenset[str] | None = None
) -> None:
    """Send the resources of ``type_url`` the proxy watches (call with ``conn.lock`` held).

    With ``hosts`` (an endpoint-only push) only the ClusterLoadAssignments of those hosts are
    sent: in SotW, EDS and RDS responses need not repeat unchanged resources.
    """
    w = conn.watch(type_url)
    parts = server.parts_for(conn, w)
    if parts is None:
        return
    if hosts is not None:
        parts = tuple(p.only(hosts) for p in parts)
    version = server.version_info()

    def build(nonce: str) -> bytes:
        # Parts are serialized once per push; protobuf merges concatenated messages, so the
        # header (version, type, nonce) may follow the resources.
        head = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        return b"".join((*(p.sotw_body for p in parts if p.items), head.SerializeToString()))

    nonce, data = server.cache.response((type_url, version, *parts), build)
    await server.deliver(conn, w, nonce, version, data)
