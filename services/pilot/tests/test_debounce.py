"""Debounce on an injected clock: quiet period, maximum delay, EDS bypass, and pushes that raise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.xds.debounce import Debouncer

from .clock import ManualClock, settle


class Pushes:
    """The push function under test: records (time, request); raises while ``broken``."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.done: list[tuple[float, PushRequest]] = []
        self.broken = 0  # how many of the next calls raise

    async def __call__(self, req: PushRequest) -> None:
        if self.broken:
            self.broken -= 1
            raise RuntimeError("push context build failed")
        self.done.append((self.clock(), req))

    def kinds(self, i: int) -> set[str]:
        return set(self.done[i][1].kinds)


@contextlib.asynccontextmanager
async def running(d: Debouncer) -> AsyncIterator[Debouncer]:
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()  # the loop was alive until the end


def full(kind: str) -> PushRequest:
    return PushRequest(full=True, kinds=frozenset({kind}), reason=(f"config:{kind}",))


async def test_debounce_merges_a_burst_and_respects_max() -> None:
    clock = ManualClock(start=0.0)
    pushes = Pushes(clock)
    d = Debouncer(pushes, after=0.1, maximum=0.35, eds_debounce=True, clock=clock, sleep=clock.sleep)
    async with running(d):
        for i in range(12):  # events every 50 ms keep the 100 ms quiet period from ever elapsing
            d.submit(full(f"K{i}"))
            await clock.advance(0.05)
        assert [t for t, _ in pushes.done] == [pytest.approx(0.35)]  # held until DEBOUNCE_MAX
        await clock.advance(0.5)
    assert [t for t, _ in pushes.done] == [pytest.approx(0.35), pytest.approx(0.65)]  # 0.55 + quiet
    assert pushes.kinds(0) == {f"K{i}" for i in range(7)}
    assert pushes.kinds(1) == {f"K{i}" for i in range(7, 12)}


async def test_quiet_period_then_push() -> None:
    clock = ManualClock()
    pushes = Pushes(clock)
    d = Debouncer(pushes, after=0.1, maximum=10.0, eds_debounce=True, clock=clock, sleep=clock.sleep)
    async with running(d):
        d.submit(full("A"))
        await clock.advance(0.099)
        assert pushes.done == []
        await clock.advance(0.001)
        assert len(pushes.done) == 1 and pushes.kinds(0) == {"A"}


async def test_eds_bypasses_debounce_when_disabled() -> None:
    clock = ManualClock()
    pushes = Pushes(clock)
    d = Debouncer(pushes, after=5.0, maximum=10.0, eds_debounce=False, clock=clock, sleep=clock.sleep)
    async with running(d):
        d.submit(PushRequest(full=False, eds_hosts=frozenset({"a"})))
        await settle()  # no time passes
        assert [r.eds_hosts for _, r in pushes.done] == [frozenset({"a"})]


async def test_a_push_that_raises_is_logged_counted_and_its_changes_pushed_with_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    pushes = Pushes(clock)
    errors: list[BaseException] = []
    d = Debouncer(pushes, 0.1, 10.0, True, on_error=errors.append, clock=clock, sleep=clock.sleep)
    caplog.set_level(logging.ERROR, "meshplane.pilot.debounce")
    async with running(d):
        pushes.broken = 1
        d.submit(full("A"))
        await clock.advance(0.1)
        assert pushes.done == [] and len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert d.last_error == "RuntimeError('push context build failed')"
        [record] = caplog.records
        assert "push failed" in record.getMessage() and record.exc_info is not None  # with traceback
        d.submit(full("B"))  # the next change is pushed, and carries the failed one
        await clock.advance(0.1)
        assert len(pushes.done) == 1 and pushes.kinds(0) == {"A", "B"}
        assert d.last_error is None


async def test_a_failed_push_is_retried_on_its_own_with_backoff() -> None:
    clock = ManualClock(start=0.0)
    pushes = Pushes(clock)
    errors: list[BaseException] = []
    d = Debouncer(pushes, 0.1, 1.0, True, on_error=errors.append, clock=clock, sleep=clock.sleep)
    async with running(d):
        pushes.broken = 2
        d.submit(full("A"))
        await clock.advance(0.1)  # first attempt fails at 0.1; retry after 0.2
        await clock.advance(0.2)  # second attempt fails at 0.3; retry after 0.4
        assert len(errors) == 2 and pushes.done == []
        await clock.advance(0.399)
        assert pushes.done == []
        await clock.advance(0.001)
        assert [(round(t, 3), r.kinds) for t, r in pushes.done] == [(0.7, frozenset({"A"}))]
        assert d.last_error is None


async def test_an_eds_push_in_between_does_not_hide_a_failed_full_push() -> None:
    clock = ManualClock()
    pushes = Pushes(clock)
    d = Debouncer(pushes, 0.1, 10.0, False, clock=clock, sleep=clock.sleep)
    async with running(d):
        pushes.broken = 1
        d.submit(full("A"))
        await clock.advance(0.1)
        d.submit(PushRequest(full=False, eds_hosts=frozenset({"h"})))
        await settle()
        assert [r.eds_hosts for _, r in pushes.done] == [frozenset({"h"})]
        assert d.last_error is not None  # the full push's changes are still waiting
        await clock.advance(0.2)
        assert pushes.kinds(1) == {"A"} and d.last_error is None


async def test_a_restarted_loop_keeps_the_changes_it_had_merged() -> None:
    clock = ManualClock()
    pushes = Pushes(clock)
    d = Debouncer(pushes, 0.1, 10.0, True, clock=clock, sleep=clock.sleep)
    async with running(d):
        d.submit(full("A"))
        await clock.advance(0.05)
    assert pushes.done == []  # the loop ended before the quiet period did
    async with running(d):  # what a supervisor's restart does
        d.submit(full("B"))
        await clock.advance(0.1)
    assert len(pushes.done) == 1 and pushes.kinds(0) == {"A", "B"}
