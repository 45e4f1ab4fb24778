"""The bus against a real nats-server: put/get/delete/watch, restarts, retries, limits."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import (
    MAX_VALUE_BYTES,
    Bus,
    BusOptions,
    BusUnavailable,
    EventType,
    TypedKV,
    ValueTooLarge,
    WatchEvent,
)
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.polling import eventually


def res(name: str, spec: str = "{}") -> config_pb2.ConfigResource:
    return config_pb2.ConfigResource(kind="VirtualService", namespace="default", name=name, spec_json=spec)


@pytest.fixture
def kv(bus: Bus) -> TypedKV[config_pb2.ConfigResource]:
    return TypedKV(bus, "test-config", config_pb2.ConfigResource)


async def next_event(
    it: AsyncIterator[WatchEvent[config_pb2.ConfigResource]], timeout: float = 10.0
) -> WatchEvent[config_pb2.ConfigResource]:
    async with asyncio.timeout(timeout):
        return await it.__anext__()


async def test_put_get_delete(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    rev = await kv.put("a", res("a", '{"hosts": ["x"]}'))
    assert rev > 0
    got = await kv.get("a")
    assert got is not None and got.spec_json == '{"hosts": ["x"]}'
    await kv.delete("a")
    assert await kv.get("a") is None
    assert await kv.get("never") is None


async def test_watch_gives_state_then_marker_then_changes(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    await kv.put("a", res("a"))
    await kv.put("b", res("b"))
    await kv.put("a", res("a", '{"v": 2}'))
    await kv.delete("b")
    async with kv.watch() as w:
        ev = await next_event(w)
        assert (ev.type, ev.key, ev.value and ev.value.spec_json) == (EventType.PUT, "a", '{"v": 2}')
        assert (await next_event(w)).type is EventType.SYNCED
        await kv.put("c", res("c"))
        ev = await next_event(w)
        assert (ev.type, ev.key) == (EventType.PUT, "c")
        await kv.delete("a")
        ev = await next_event(w)
        assert (ev.type, ev.key, ev.value) == (EventType.DELETE, "a", None)


async def test_watch_on_empty_bucket_is_synced_at_once(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    async with kv.watch() as w:
        assert (await next_event(w)).type is EventType.SYNCED


async def test_same_value_twice_is_one_event(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    async with kv.watch() as w:
        assert (await next_event(w)).type is EventType.SYNCED
        await kv.put("a", res("a"))
        await kv.put("a", res("a"))
        await kv.put("a", res("a", '{"v": 1}'))
        first, second = await next_event(w), await next_event(w)
        assert [first.value and first.value.spec_json, second.value and second.value.spec_json] == [
            "{}",
            '{"v": 1}',
        ]


async def test_items_snapshot(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    for i in range(20):
        await kv.put(f"k{i}", res(f"k{i}"))
    items = await kv.items()
    assert sorted(items) == sorted(f"k{i}" for i in range(20))


async def test_trace_context_travels_in_headers(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as span:
        await kv.put("traced", res("traced"))
        trace_id = span.get_span_context().trace_id
    async with kv.watch() as w:
        ev = await next_event(w)
        assert "traceparent" in ev.headers
        ctx = trace.get_current_span(ev.trace_context()).get_span_context()
        assert ctx.trace_id == trace_id


async def test_value_over_limit_is_refused(kv: TypedKV[config_pb2.ConfigResource]) -> None:
    with pytest.raises(ValueTooLarge) as err:
        await kv.put("big", res("big", "x" * (MAX_VALUE_BYTES + 1)))
    assert "big" in str(err.value)
    assert await kv.get("big") is None


async def test_watch_survives_server_restart_without_loss_or_duplicates(
    nats_server: NatsServer, kv: TypedKV[config_pb2.ConfigResource]
) -> None:
    for i in range(5):
        await kv.put(f"before{i}", res(f"before{i}"))
    seen: list[tuple[EventType, str]] = []
    async with kv.watch(heartbeat=0.5) as w:
        while (ev := await next_event(w)).type is not EventType.SYNCED:
            seen.append((ev.type, ev.key))
        assert len(seen) == 5
        nats_server.restart()
        # Writes made while the watch is recovering (the publisher retries through the restart).
        for i in range(5):
            await kv.put(f"after{i}", res(f"after{i}"))
        await kv.delete("before0")
        await kv.put("before1", res("before1", '{"changed": true}'))
        changes: list[tuple[EventType, str]] = []
        while len(changes) < 7:
            ev = await next_event(w, timeout=20)
            changes.append((ev.type, ev.key))
        assert changes == [(EventType.PUT, f"after{i}") for i in range(5)] + [
            (EventType.DELETE, "before0"),
            (EventType.PUT, "before1"),
        ]
        # Nothing more arrives: no duplicates from the replay.
        with pytest.raises(asyncio.TimeoutError):
            await next_event(w, timeout=2)
        assert w.restarts >= 2
        assert w.keys == {f"after{i}" for i in range(5)} | {f"before{i}" for i in range(1, 5)}


async def test_watch_resumes_on_reconnect_not_at_its_heartbeat_timeout(
    nats_server: NatsServer, kv: TypedKV[config_pb2.ConfigResource]
) -> None:
    """A watch waiting for changes resumes when the bus reconnects (heartbeat 5 s: timeout 15 s).

    SIGKILL, so the server loses the watch's in-memory consumer, as when ``meshctl up``'s bus dies.
    """
    async with kv.watch(heartbeat=5.0) as w:
        assert (await next_event(w)).type is EventType.SYNCED
        waiting = asyncio.create_task(next_event(w, timeout=20))  # blocked in the watch meanwhile
        assert nats_server.proc is not None
        nats_server.proc.kill()
        nats_server.proc.wait()
        nats_server.start()
        await kv.put("after", res("after"))  # retried until the bus is back
        put = asyncio.get_running_loop().time()
        ev = await waiting
        assert (ev.type, ev.key) == (EventType.PUT, "after")
        took = asyncio.get_running_loop().time() - put
        assert took < 5, f"the change reached the watch {took:.1f}s after the put"


async def test_watch_resyncs_when_the_server_lost_its_store(
    nats_server: NatsServer, kv: TypedKV[config_pb2.ConfigResource]
) -> None:
    await kv.put("kept", res("kept"))
    await kv.put("lost", res("lost"))
    async with kv.watch(heartbeat=0.5) as w:
        while (await next_event(w)).type is not EventType.SYNCED:
            pass
        nats_server.stop()
        shutil.rmtree(nats_server.store_dir)
        nats_server.start()
        kv.bus.forget_buckets()
        await kv.put("kept", res("kept"))
        await kv.put("new", res("new"))
        got = {(ev.type, ev.key) for ev in [await next_event(w, 20), await next_event(w, 20)]}
        assert got == {(EventType.DELETE, "lost"), (EventType.PUT, "new")}
        with pytest.raises(asyncio.TimeoutError):
            await next_event(w, timeout=2)


async def test_publish_retries_across_a_short_outage(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await Bus.connect(BusOptions(url=nats_server.url, publish_deadline=15.0))
    try:
        kv = TypedKV(bus, "retry", config_pb2.ConfigResource)
        await kv.put("a", res("a"))
        nats_server.stop()
        task = asyncio.create_task(kv.put("b", res("b")))

        async def retrying() -> bool:
            return sum("retrying" in r.getMessage() for r in caplog.records) >= 2

        with caplog.at_level(logging.WARNING, logger="meshplane.shared.bus.client"):
            await eventually(retrying, "the publish to be retried while the server is down")
        assert not task.done()
        nats_server.start()
        assert await asyncio.wait_for(task, 20) > 0
        assert await kv.get("b") is not None
    finally:
        await bus.close()


async def test_publish_fails_loudly_when_server_stays_down(nats_server: NatsServer) -> None:
    bus = await Bus.connect(BusOptions(url=nats_server.url, publish_deadline=2.0))
    try:
        kv = TypedKV(bus, "down", config_pb2.ConfigResource)
        await kv.put("a", res("a"))
        nats_server.stop()
        with pytest.raises(BusUnavailable) as err:
            await kv.put("b", res("b"))
        assert "publish" in str(err.value) and "down" in str(err.value)
    finally:
        nats_server.start()
        await bus.close()


async def test_connect_to_nothing_fails_clearly() -> None:
    from meshplane.shared.natsserver import free_port

    with pytest.raises(BusUnavailable) as err:
        await Bus.connect(BusOptions(url=f"nats://127.0.0.1:{free_port()}", connect_timeout=1.0))
    assert "connect" in str(err.value)
    # nats-py retried the refused connection every 0.25 s; the error says so and names the refusal,
    # not "1 attempt" and the deadline's timeout.
    assert err.value.attempts >= 2, str(err.value)
    assert isinstance(err.value.last_error, OSError) and not isinstance(err.value.last_error, TimeoutError)


async def test_connect_waits_for_a_server_that_starts_late(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A component started before nats-server (or while it restarts) connects once it is up."""
    server = NatsServer(tmp_path / "late")
    server.port = free_port()
    with caplog.at_level(logging.DEBUG, logger="meshplane.shared.bus.client"):
        connecting = asyncio.create_task(Bus.connect(BusOptions(url=server.url, connect_timeout=30)))

        async def refused_twice() -> bool:
            return sum("bus connection error" in r.getMessage() for r in caplog.records) >= 2

        await eventually(refused_twice, "two refused connection attempts")
        assert not connecting.done()
        server.start()
        try:
            bus = await asyncio.wait_for(connecting, 20)
            try:
                kv = TypedKV(bus, "late", config_pb2.ConfigResource)
                assert await kv.put("a", res("a")) > 0
            finally:
                await bus.close()
        finally:
            server.stop()
