"""The gRPC ADS service: SotW ``StreamAggregatedResources`` and ``DeltaAggregatedResources``.

Each stream reads requests in its own task and writes responses from the connection's outbox,
so cheap ACKs never wait behind a push. New streams pass a token bucket
(``PILOT_MAX_REQUESTS_PER_SECOND``, burst 1, wait at most 1 s) so a reconnect storm spreads out.

The token bucket is the only place a connect storm is turned away. gRPC core has a limit of its
own: new calls wait in a backlog until the server asks for them, and beyond 1000 waiting calls it
cancels a growing share of them (all beyond 3000; "random early detection"). grpcio's asyncio
server asks for one call at a time, so 2000 proxies connecting at once overflowed that backlog:
streams were cancelled before Pilot saw them (CANCELLED at the client, or INTERNAL when the client
was writing), and nothing counted it. :func:`server_options` lifts that backlog to the stream limit.
Every stream Pilot ends on purpose is counted in ``pilot_xds_stream_resets`` (by reason) and logged.
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
from prometheus_client import Counter

from meshplane.pilot.model.proxy import InvalidNode, Proxy, locality_text, parse_proxy
from meshplane.pilot.model.proxyversion import envoy_build_version
from meshplane.pilot.security.xds_tls import check_peer, peer_spiffe_ids
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds import delta, sotw
from meshplane.pilot.xds.autoregister import HEALTH_TYPE, AutoRegistration, RegistrationError
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer

log = logging.getLogger("meshplane.pilot.ads")

#: Concurrent streams per server, and calls gRPC core may hold before Pilot picks them up.
MAX_STREAMS = 100_000
#: Istio closes a connection this long after ``max_connection_age`` (keepalive
#: MaxServerConnectionAgeGrace): ADS streams never end by themselves, so without it the age
#: limit would only send GOAWAY and the proxy would never move.
CONNECTION_AGE_GRACE = 10.0


def server_options(s: Settings) -> list[tuple[str, int]]:
    """gRPC server options for ADS (keepalive and connection age as Istio's defaults)."""
    return [
        ("grpc.keepalive_time_ms", int(s.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.max_connection_age_ms", int(s.max_connection_age * 1000)),
        ("grpc.max_connection_age_grace_ms", int(CONNECTION_AGE_GRACE * 1000)),
        ("grpc.max_concurrent_streams", MAX_STREAMS),
        # see the module docstring: the token bucket, not gRPC core, limits a connect storm
        ("grpc.server.max_pending_requests", MAX_STREAMS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_STREAMS),
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


class Resets:
    """Streams Pilot ends on purpose: counted by reason, logged at most once a second per reason
    (a storm turns away hundreds of streams a second) with the number since the last line."""

    def __init__(self, counter: Counter, clock: Any = time.monotonic) -> None:
        self.counter = counter
        self.clock = clock
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def reset(self, reason: str, peer: str, detail: str) -> None:
        self.counter.labels(reason).inc()
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = self.clock()
        if now - self._logged_at.get(reason, -1e9) >= 1.0:
            n, self._unlogged[reason] = self._unlogged[reason], 0
            self._logged_at[reason] = now
            log.warning("ADS: ended %d stream(s) on purpose (%s), last from %s: %s", n, reason, peer, detail)


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
    def __init__(
        self,
        server: DiscoveryServer,
        authenticate: bool = False,
        registration: AutoRegistration | None = None,
    ) -> None:
        self.server = server
        #: VM auto-registration and health reports (None: PILOT_ENABLE_WORKLOAD_ENTRY=false)
        self.registration = registration
        #: mutual TLS: refuse a proxy whose certificate is not its namespace's (and account's)
        self.authenticate = authenticate
        self.limiter = TokenBucket(server.settings.max_requests_per_second)
        self.max_age = server.settings.max_connection_age
        self.resets = Resets(
            Counter(
                "pilot_xds_stream_resets",
                "xDS streams Pilot ended on purpose, by reason (rate_limited, max_connection_age, "
                "unauthenticated).",
                ["reason"],
                registry=server.metrics.registry,
            )
        )

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
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        # Refused after its first request has arrived (Istio refuses before reading): a client
        # still writing that request when the refusal came would see its write fail (grpcio
        # reports INTERNAL) and not the status saying it was rate limited.
        if not await self.limiter.acquire():
            detail = "rate limited: too many new xDS streams (PILOT_MAX_REQUESTS_PER_SECOND)"
            self.resets.reset("rate_limited", context.peer(), detail)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, detail)
        try:
            node = first.node
            where = locality_text(node.locality.region, node.locality.zone, node.locality.sub_zone)
            sent = first.HasField("node")
            proxy = parse_proxy(
                node.id, node.metadata if sent else None, where, envoy_build_version(node if sent else None)
            )
        except InvalidNode as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        if self.authenticate:
            refused = check_peer(peer_spiffe_ids(context), proxy)
            if refused is not None:
                self.resets.reset("unauthenticated", context.peer(), f"{proxy.id}: {refused}")
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"proxy {proxy.id}: {refused}")
        if first.type_url == HEALTH_TYPE:  # a proxy's health reporter: no config, no registration
            await self._health_reports(proxy, first, requests)
            return
        if self.registration is not None:
            opening = self.registration.stream_opened(proxy)
            try:
                await asyncio.shield(opening)
            except RegistrationError as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except asyncio.CancelledError:  # gone while being registered: unregistered once registered
                self.registration.close_once_opened(opening, proxy)
                raise
            except Exception:
                log.exception("auto-registration of %s failed; serving it unregistered", proxy.id)
        conn = Connection(proxy, context.peer(), is_delta)
        process = delta.process if is_delta else sotw.process
        log.info(
            "ADS %s connected: %s (%s; Istio %s, Envoy %s%s)",
            "delta" if is_delta else "sotw",
            conn.id,
            conn.peer,
            proxy.version.istio,
            proxy.version.envoy,
            f"; not sent: {', '.join(sorted(proxy.unsupported))}" if proxy.unsupported else "",
        )
        self.server.add(conn)

        async def reader() -> None:
            try:
                await process(self.server, conn, first)
                conn.initialized.set()
                async for req in requests:
                    if req.type_url == HEALTH_TYPE:
                        await self._report(proxy, req)
                    elif not (is_delta and delta.answered(self.server, conn, req)):
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
            # A proxy never ends its stream: one that lived to max_connection_age (which gRPC core
            # jitters by up to -10 %) was closed with its connection, so that it reconnects.
            if time.time() - conn.connected_at >= 0.9 * self.max_age:
                self.resets.reset("max_connection_age", conn.peer, f"{conn.id} reconnects to rebalance")
            self.server.remove(conn)
            conn.drain()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.info("ADS disconnected: %s", conn.id)
            if self.registration is not None:
                await asyncio.shield(self.registration.stream_closed(proxy))

    async def _health_reports(self, proxy: Proxy, first: Any, requests: AsyncIterator[Any]) -> None:
        """A stream that only reports health (``meshctl workload-probe``): every request is one."""
        log.info("ADS health reports from %s", proxy.id)
        await self._report(proxy, first)
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            async for req in requests:
                await self._report(proxy, req)

    async def _report(self, proxy: Proxy, req: Any) -> None:
        if self.registration is None:
            log.info("health report from %s ignored: PILOT_ENABLE_WORKLOAD_ENTRY is false", proxy.id)
            return
        if req.type_url != HEALTH_TYPE:
            return
        try:
            await self.registration.report_health(proxy, req)
        except Exception:
            log.exception("recording the health of %s failed", proxy.id)


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
