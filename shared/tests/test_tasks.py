"""TaskSupervisor: failures are logged, counted and restarted with backoff, or end the service."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from meshplane.shared.tasks import Backoff, TaskFailure, TaskSupervisor


class FakeTime:
    """A clock that advances only when the supervisor sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.woke = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.woke.set()


def _supervisor(time: FakeTime, **kw: object) -> tuple[TaskSupervisor, CollectorRegistry]:
    registry = CollectorRegistry()
    sup = TaskSupervisor(
        "test",
        TaskSupervisor.metric("test", registry),
        clock=time.clock,
        sleep=time.sleep,
        **kw,  # type: ignore[arg-type]
    )
    return sup, registry


async def test_a_failing_task_is_logged_counted_and_restarted_with_doubling_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    sup, registry = _supervisor(time)
    runs = 0
    recovered = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise RuntimeError(f"boom {runs}")
        recovered.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="meshplane.tasks"):
        sup.spawn("flaky", flaky)
        await asyncio.wait_for(recovered.wait(), 5)
    assert time.slept == [0.5, 1.0, 2.0, 4.0]
    assert registry.get_sample_value("test_task_failures_total", {"task": "flaky"}) == 4
    assert sup.running("flaky") and sup.failures("flaky") == 4
    failures = [r for r in caplog.records if "task flaky failed" in r.getMessage()]
    assert len(failures) == 4 and all(r.exc_info for r in failures)
    assert "boom 1" in caplog.text
    await sup.aclose()
    assert not sup.running("flaky")


def test_backoff_caps_at_the_maximum_and_resets_after_a_long_healthy_run() -> None:
    b = Backoff(initial=1, maximum=30, reset_after=60)
    delays: list[float] = []
    d: float | None = None
    for _ in range(7):
        d = b.next(d, ran_for=1)
        delays.append(d)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert b.next(30, ran_for=60) == 1


async def test_a_fatal_task_stops_the_service_and_raise_if_failed_reports_it() -> None:
    time = FakeTime()
    stop = asyncio.Event()
    sup, registry = _supervisor(time, on_fatal=stop.set)

    async def broken() -> None:
        raise ValueError("cannot go on")

    sup.spawn("loop", broken, restart=False)
    await asyncio.wait_for(stop.wait(), 5)
    assert not sup.running("loop")
    assert registry.get_sample_value("test_task_failures_total", {"task": "loop"}) == 1
    with pytest.raises(TaskFailure, match="cannot go on"):
        sup.raise_if_failed()
    assert time.slept == []


async def test_running_is_false_while_a_task_waits_to_be_restarted() -> None:
    gate = asyncio.Event()
    sleeping = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        sleeping.set()
        await gate.wait()

    sup = TaskSupervisor("test", sleep=held_sleep)
    calls = 0

    async def once_broken() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first run fails")
        await asyncio.Event().wait()

    sup.spawn("push", once_broken)
    await asyncio.wait_for(sleeping.wait(), 5)
    assert not sup.running("push")
    gate.set()
    for _ in range(100):
        if sup.running("push"):
            break
        await asyncio.sleep(0)
    assert sup.running("push") and calls == 2
    await sup.aclose()
    sup.raise_if_failed()  # nothing fatal happened


async def test_a_task_that_returns_is_warned_about_unless_the_service_is_closing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, _ = _supervisor(FakeTime())

    async def ends() -> None:
        return

    with caplog.at_level(logging.DEBUG, logger="meshplane.tasks"):
        await sup.spawn("early", ends)
        sup.begin_close()  # e.g. a server told to exit now returns
        await sup.spawn("server", ends)
    [early] = [r for r in caplog.records if "early" in r.getMessage()]
    [server] = [r for r in caplog.records if "server" in r.getMessage()]
    assert early.levelno == logging.WARNING and "returned; it is not restarted" in early.getMessage()
    assert server.levelno == logging.DEBUG


async def test_every_task_is_exported_with_zero_failures_from_its_start() -> None:
    sup, registry = _supervisor(FakeTime())
    never = asyncio.Event()
    sup.spawn("quiet", never.wait)
    assert registry.get_sample_value("test_task_failures_total", {"task": "quiet"}) == 0.0
    await sup.aclose()
