"""The shared retry helper: retries only what it is told to, backs off, gives up with a clear error."""

from __future__ import annotations

import asyncio

import pytest

from meshplane.shared.retry import RetriesExhausted, RetryPolicy, retry, retry_unless_stopped, sleep_unless


class FakeTime:
    """A clock that the injected sleep advances: backoff without waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    def __init__(self, failures: list[BaseException], value: str = "ok") -> None:
        self.failures = failures
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


async def test_retries_listed_exceptions_with_doubling_capped_waits() -> None:
    t = FakeTime()
    op = Flaky([ConnectionError("refused")] * 5)
    seen: list[tuple[int, str, float]] = []
    policy = RetryPolicy(retry_on=(ConnectionError,), initial=0.1, maximum=0.5)
    result = await retry(
        op,
        what="connect",
        policy=policy,
        sleep=t.sleep,
        clock=t.clock,
        on_retry=lambda n, exc, wait: seen.append((n, str(exc), wait)),
    )
    assert result == "ok"
    assert op.calls == 6
    assert t.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert [(n, msg) for n, msg, _ in seen] == [(n, "refused") for n in range(1, 6)]


async def test_a_lambda_returning_an_awaitable_is_awaited() -> None:
    t = FakeTime()
    op = Flaky([OSError("once")], value="done")
    policy = RetryPolicy(retry_on=(OSError,))
    assert await retry(lambda: op(), what="op", policy=policy, sleep=t.sleep, clock=t.clock) == "done"
    assert op.calls == 2


async def test_other_exceptions_propagate_at_once() -> None:
    t = FakeTime()
    op = Flaky([ValueError("bad input")])
    with pytest.raises(ValueError, match="bad input"):
        await retry(op, what="parse", policy=RetryPolicy(retry_on=(OSError,)), sleep=t.sleep, clock=t.clock)
    assert op.calls == 1
    assert t.sleeps == []


async def test_gives_up_after_its_deadline_naming_the_operation_and_cause() -> None:
    t = FakeTime()
    op = Flaky([TimeoutError("no ack")] * 100)
    policy = RetryPolicy(retry_on=(TimeoutError,), initial=0.25, maximum=1.0, deadline=2.0)
    with pytest.raises(RetriesExhausted) as info:
        await retry(op, what="publish to a.b", policy=policy, sleep=t.sleep, clock=t.clock)
    err = info.value
    assert str(err) == f"publish to a.b: gave up after {op.calls} attempt(s): TimeoutError: no ack"
    assert isinstance(err.last_error, TimeoutError) and err.__cause__ is err.last_error
    assert not err.stopped
    # Waits 0.25, 0.5, 1.0, then only what is left of the 2 s budget; no wait runs past it.
    assert t.sleeps == pytest.approx([0.25, 0.5, 1.0, 0.25])
    assert t.now - 100.0 == pytest.approx(2.0)


async def test_jitter_scales_each_wait() -> None:
    t = FakeTime()
    op = Flaky([OSError("x")] * 2)
    policy = RetryPolicy(retry_on=(OSError,), initial=1.0, maximum=4.0, jitter=0.2)
    await retry(op, what="op", policy=policy, sleep=t.sleep, clock=t.clock, uniform=lambda lo, hi: hi)
    assert t.sleeps == pytest.approx([1.2, 2.4])


async def test_stopped_cuts_the_wait_short_and_makes_no_further_attempt() -> None:
    stop = asyncio.Event()
    op = Flaky([OSError("down")] * 100)

    async def stop_during_the_first_wait() -> str:
        if op.calls == 0:
            asyncio.get_running_loop().call_soon(stop.set)  # runs once attempt 1 has failed
        return await op()

    policy = RetryPolicy(retry_on=(OSError,), initial=30.0, maximum=30.0)
    with pytest.raises(
        RetriesExhausted, match=r"^watch: stopped after 1 attempt\(s\): OSError: down$"
    ) as info:
        # The 30 s wait after attempt 1 ends as soon as stop is set: the test does not wait it out.
        await asyncio.wait_for(
            retry(
                stop_during_the_first_wait,
                what="watch",
                policy=policy,
                stopped=stop.is_set,
                sleep=sleep_unless(stop),
            ),
            timeout=5,
        )
    assert info.value.stopped
    assert op.calls == 1  # no attempt after the stop


async def test_retry_unless_stopped_returns_none_once_stopped_and_raises_on_its_deadline() -> None:
    stop = asyncio.Event()
    stop.set()
    op = Flaky([])
    policy = RetryPolicy(retry_on=(OSError,), initial=0.01, maximum=0.01)
    assert await retry_unless_stopped(op, what="op", policy=policy, stop=stop) is None
    assert op.calls == 0  # already stopped: not even one attempt

    running = asyncio.Event()
    assert await retry_unless_stopped(Flaky([OSError("x")]), what="op", policy=policy, stop=running) == "ok"

    budget = RetryPolicy(retry_on=(OSError,), initial=0.01, maximum=0.01, deadline=0.05)
    with pytest.raises(RetriesExhausted, match="op: gave up after"):
        await retry_unless_stopped(Flaky([OSError("x")] * 1000), what="op", policy=budget, stop=running)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry_on": ()}, "name at least one exception type"),
        ({"retry_on": (OSError,), "initial": 0}, "need 0 < initial <= maximum"),
        ({"retry_on": (OSError,), "initial": 2, "maximum": 1}, "need 0 < initial <= maximum"),
        ({"retry_on": (OSError,), "jitter": 1.5}, "expected a fraction"),
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
