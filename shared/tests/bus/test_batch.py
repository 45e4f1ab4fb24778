"""Batched puts against a real nats-server: every record stored, in order, through outages."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from meshplane.proto.bus.v1 import config_pb2, status_pb2
from meshplane.shared.bus import (
    MAX_VALUE_BYTES,
    Buckets,
    Bus,
    BusOptions,
    BusUnavailable,
    PermissionDenied,
    TypedKV,
    ValueTooLarge,
)
from meshplane.shared.bus.buckets import TRUST_BUCKET
from meshplane.shared.bus.pki import BusPki
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually


def res(name: str, spec: str = "{}") -> config_pb2.ConfigResource:
    return config_pb2.ConfigResource(kind="VirtualService", namespace="default", name=name, spec_json=spec)


async def test_put_many_stores_every_record_and_reports_each_in_order(bus: Bus) -> None:
    kv = TypedKV(bus, "batch", config_pb2.ConfigResource)
    items = [(f"k{i}", res(f"r{i}")) for i in range(300)]
    items.insert(7, ("big", res("big", "x" * (MAX_VALUE_BYTES + 1))))
    results = await kv.put_many(items)
    assert len(results) == len(items)
    big = results.pop(7)
    assert isinstance(big, ValueTooLarge) and "big" in str(big)
    assert all(isinstance(r, int) for r in results)
    assert results == sorted(results) and len(set(results)) == len(results)  # one revision each, in order
    got = await kv.items()
    assert {k: v.name for k, v in got.items()} == {f"k{i}": f"r{i}" for i in range(300)}


async def test_put_many_carries_the_trace_context(bus: Bus) -> None:
    kv = TypedKV(bus, "batch-traced", config_pb2.ConfigResource)
    with TracerProvider().get_tracer("test").start_as_current_span("publish") as span:
        await kv.put_many([("a", res("a")), ("b", res("b"))])
        trace_id = span.get_span_context().trace_id
    async with kv.watch() as w:
        ev = await asyncio.wait_for(w.__anext__(), 10)
    assert trace.get_current_span(ev.trace_context()).get_span_context().trace_id == trace_id


async def test_put_many_across_a_short_outage_stores_everything(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await Bus.connect(BusOptions(url=nats_server.url, ack_timeout=1.0, publish_deadline=20.0))
    try:
        kv = TypedKV(bus, "batch-retry", config_pb2.ConfigResource)
        await kv.put("first", res("first"))
        nats_server.stop()
        task = asyncio.create_task(kv.put_many([(f"k{i}", res(f"r{i}")) for i in range(20)]))

        async def retrying() -> bool:
            return any("retrying" in r.getMessage() for r in caplog.records)

        with caplog.at_level(logging.WARNING, logger="meshplane.shared.bus.client"):
            await eventually(retrying, "the unacknowledged puts to be retried one by one", timeout=20)
        assert not task.done()
        nats_server.start()
        results = await asyncio.wait_for(task, 30)
        assert all(isinstance(r, int) and r > 0 for r in results), results
        assert len(await kv.items()) == 21
    finally:
        await bus.close()


async def test_put_many_reports_each_record_lost_when_the_server_stays_down(nats_server: NatsServer) -> None:
    bus = await Bus.connect(BusOptions(url=nats_server.url, ack_timeout=0.5, publish_deadline=1.0))
    try:
        kv = TypedKV(bus, "batch-down", config_pb2.ConfigResource)
        await kv.put("first", res("first"))
        nats_server.stop()
        results = await kv.put_many([("a", res("a")), ("b", res("b"))])
        assert [type(r) for r in results] == [BusUnavailable, BusUnavailable]
        assert all("batch-down" in str(r) for r in results)
    finally:
        nats_server.start()
        await bus.close()


async def test_put_many_as_pilot_on_the_authenticated_bus(nats_server: NatsServer, bus_pki: BusPki) -> None:
    """The acknowledgements come back on Pilot's own inbox prefix; a bucket it may not write
    refuses every record, each reported."""
    opts = BusOptions(url=nats_server.url, credentials=bus_pki.credentials("pilot"), publish_deadline=3.0)
    citadel = await Bus.connect(BusOptions(url=nats_server.url, credentials=bus_pki.credentials("citadel")))
    pilot = await Bus.connect(opts)
    try:
        await citadel.ensure_bucket(TRUST_BUCKET)
        statuses = Buckets(pilot).proxy_status
        records = [(f"pilot-1.p{i}", status_pb2.ProxyStatus(proxy_id=f"p{i}")) for i in range(50)]
        assert all(isinstance(r, int) for r in await statuses.put_many(records))
        assert len(await statuses.items()) == 50
        refused = await Buckets(pilot).trust.put_many([(k, status_pb2.TrustBundle()) for k in ("a", "b")])
        assert [type(r) for r in refused] == [PermissionDenied, PermissionDenied]
    finally:
        await pilot.close()
        await citadel.close()
