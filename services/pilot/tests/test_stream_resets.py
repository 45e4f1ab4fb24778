"""Streams Pilot ends on purpose are counted in ``pilot_xds_stream_resets`` and logged.

The rate limit's refusals are covered by the connect-storm test (tests/integration/benchmarks);
here: max_connection_age against an in-process Pilot on a real nats-server, and the log
throttle with an injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry, Counter

from meshplane.pilot.app import Pilot
from meshplane.pilot.generators import common
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds.ads import CONNECTION_AGE_GRACE, Resets
from meshplane.shared.bus import Bus
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

NODE = "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


@pytest.fixture
async def pilot(bus: Bus) -> AsyncIterator[Pilot]:
    lo = "127.0.0.1"
    age = 1.0  # seconds: gRPC closes every connection this old (plus the grace period)
    p = Pilot(
        Settings(
            grpc_host=lo,
            grpc_port=0,
            http_host=lo,
            http_port=0,
            debug_port=0,
            nats_url=bus.opts.url,
            max_connection_age=age,
        )
    )
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))

    async def ready() -> bool:
        return p.ready

    await eventually(ready, "Pilot ready", 10)
    yield p
    stop.set()
    await asyncio.wait_for(task, 20)


async def _requests() -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER)
    req.node.id = NODE
    yield req
    await asyncio.Event().wait()  # the stream stays open until the server ends it


async def test_a_stream_closed_at_max_connection_age_is_counted_and_logged(
    pilot: Pilot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "meshplane.pilot.ads")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.grpc_port}") as channel:
        call = channel.stream_stream(
            DELTA,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
        )(_requests())
        first = await asyncio.wait_for(call.read(), 10)
        assert first.type_url == common.CLUSTER
        # gRPC closes the connection at its age (1 s, jittered) plus the grace period
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(1.5 + CONNECTION_AGE_GRACE + 10):
                while await call.read() is not grpc.aio.EOF:
                    pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value

    async def counted() -> bool:
        labels = {"reason": "max_connection_age"}
        return pilot.metrics.registry.get_sample_value("pilot_xds_stream_resets_total", labels) == 1.0

    # the server side notices on its own event loop turn
    await eventually(counted, "the closed stream counted as max_connection_age", 5)
    assert "on purpose (max_connection_age)" in caplog.text


def test_resets_are_all_counted_and_logged_at_most_once_a_second_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    registry = CollectorRegistry()
    resets = Resets(Counter("resets", "", ["reason"], registry=registry), clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "meshplane.pilot.ads")
    for _ in range(5):
        resets.reset("rate_limited", "ipv4:127.0.0.1:1", "too many")
        now[0] += 0.3
    lines = [r.getMessage() for r in caplog.records]
    assert registry.get_sample_value("resets_total", {"reason": "rate_limited"}) == 5
    # the first at once; the next line, 1.2 s later, carries the four since
    assert [line.split(" stream")[0] for line in lines] == ["ADS: ended 1", "ADS: ended 4"]
