"""The component announcer keeps its record fresh, sweeps records of dead components, and withdraws."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus, make_key
from meshplane.shared.components import ComponentAnnouncer, is_live, seconds_from_env
from meshplane.shared.freshness import age_seconds
from meshplane.shared.tasks import TaskSupervisor

pytestmark = pytest.mark.timeout(60)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_announcer_refreshes_sweeps_dead_records_and_withdraws(bus: Bus) -> None:
    kv = Buckets(bus).components
    for component in ("galley", "pilot"):
        dead = status_pb2.ComponentInfo(component=component, instance="killed", version="0.1.0")
        dead.updated.FromNanoseconds(int((time.time() - 5) * 1e9))
        await kv.put(make_key(component, "killed"), dead)
    tasks = TaskSupervisor("galley")
    announcer = ComponentAnnouncer(
        bus, "galley", {"webhook": "127.0.0.1:1"}, "g-1", refresh=0.2, gc_after=1.0, supervisor=tasks
    )
    await announcer.announce()
    assert tasks.running("announce-galley")  # the refresher runs under the supervisor
    first = await kv.get(announcer.key)
    assert first is not None and is_live(first) and first.endpoints["webhook"] == "127.0.0.1:1"
    first_updated = first.updated.ToNanoseconds()

    async def refreshed() -> bool:
        rec = await kv.get(announcer.key)
        return rec is not None and rec.updated.ToNanoseconds() > first_updated

    async def swept() -> bool:
        return await kv.get(make_key("galley", "killed")) is None

    await _until(refreshed)
    await _until(swept)
    # the sweep that removed the dead Galley left the dead Pilot: a Galley's bus identity may write
    # only Galley records (a live Pilot sweeps that one)
    assert await kv.get(make_key("pilot", "killed")) is not None
    rec = await kv.get(announcer.key)
    assert rec is not None and age_seconds(rec) < 10
    await announcer.withdraw()
    # withdraw returns only once the refresher has ended, so nothing can write the record back
    assert tasks.down() == [] and not tasks.running("announce-galley")
    assert await kv.get(announcer.key) is None


def test_limits_from_environment_reject_bad_values_by_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MESHPLANE_COMPONENT_STALE_SECONDS", "2.5")
    assert seconds_from_env("MESHPLANE_COMPONENT_STALE_SECONDS", 30.0) == 2.5
    for bad in ("soon", "-1", "0"):
        monkeypatch.setenv("MESHPLANE_COMPONENT_STALE_SECONDS", bad)
        assert seconds_from_env("MESHPLANE_COMPONENT_STALE_SECONDS", 30.0) == 30.0
        assert f"MESHPLANE_COMPONENT_STALE_SECONDS={bad!r} is not a positive number" in caplog.text
