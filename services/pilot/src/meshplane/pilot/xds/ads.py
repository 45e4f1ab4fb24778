"""The gRPC ADS service: SotW ``StreamAggregatedResources`` and ``DeltaAggregatedResources``.

Each stream reads requests in its own task and writes responses from the connection's outbox,
so cheap ACKs never wait behind a push. New streams pass a token bucket
(``PILOT_MAX_REQUESTS_PER_SECOND``, burst 1, wait at most 1 s) so a reconnect storm spreads out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.model.proxy import InvalidNode, locality_text, parse_proxy
from meshplane.pilot.xds import delta, sotw
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer

log = logging.getLogger("meshplane.pilot.ads")


class TokenBucket:
    """Burst 1; ``acquire`` waits up to ``max_wait`` seconds for a token."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, max_wait: float = 1.0) -> bool:
        async with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            if slot - now > max_wait:
                return False
            self._next = slot + self.interval
        await asyncio.sleep(slot - now)
        return True


class AdsServicer:
    def __init__(self, server: DiscoveryServer) -> None:
        self.server = server
        self.limiter = TokenBucket(server.settings.max_requests_per_second)

    async def StreamAggregatedResources(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Payload]:
        async for resp in self._stream(request_iterator, context, is_delta=False):
            yield resp

    async def DeltaAggregatedResources(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Payload]:
        async for resp in self._stream(request_iterator, context, is_delta=True):
            yield resp

    async def _stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, is_delta: bool
    ) -> AsyncIterator[Any]:
        if not await self.limiter.acquire():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited: too many new xDS streams")
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        try:
            node = first.node
            where = locality_text(node.locality.region, node.locality.zone, node.locality.sub_zone)
            proxy = parse_proxy(node.id, node.metadata if first.HasField("node") else None, where)
        except InvalidNode as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        conn = Connection(proxy, context.peer(), is_delta)
        process = delta.process if is_delta else sotw.process
        log.info("ADS %s connected: %s (%s)", "delta" if is_delta else "sotw", conn.id, conn.peer)
        self.server.add(conn)

        async def reader() -> None:
            try:
                await process(self.server, conn, first)
                conn.initialized.set()
                async for req in requests:
                    await process(self.server, conn, req)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            except Exception:
                log.exception("ADS stream of %s failed", conn.id)
            finally:
                await conn.outbox.put(None)

        task = asyncio.create_task(reader())
        try:
            while True:
                item = await conn.outbox.get()
                if item is None:
                    break
                yield Payload(item)
                del item
        finally:
            self.server.remove(conn)
            conn.drain()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.info("ADS disconnected: %s", conn.id)


class Payload:
    """A serialized response handed to grpcio, which keeps a reference to the last message of a
    stream until the next one; the serializer empties the wrapper so an idle stream does not pin
    its last response (up to MBs with 1000 clusters) for as long as it stays idle."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _take(payload: Payload) -> bytes:
    data, payload.data = payload.data, b""
    return data


def add_to_server(servicer: AdsServicer, server: grpc.aio.Server) -> None:
    """Register ADS with responses that are already serialized (see ``resources.Resource``)."""
    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_take,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=_take,
        ),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService", handlers
            ),
        )
    )
