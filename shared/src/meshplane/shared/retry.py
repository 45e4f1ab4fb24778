"""Retrying one operation with exponential backoff: the one helper every service uses (on tenacity).

A retry here is of a single operation that may fail for a while (the bus not up yet, a timeout),
with the exceptions worth retrying named explicitly: anything else propagates at once. Long-running
loops that must be restarted when they fail are :class:`meshplane.shared.tasks.TaskSupervisor`'s job,
not this module's.

    policy = RetryPolicy(retry_on=(OSError, nats.errors.Error), initial=0.1, maximum=1.0, deadline=10)
    value = await retry(lambda: read(), what="read config", policy=policy)

The sleep, the clock and the jitter source are injectable, so tests drive the backoff without waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures to retry, and how long to wait between attempts.

    The n-th wait is ``initial * 2**(n-1)`` capped at ``maximum``, scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``. With a ``deadline`` (seconds from the first attempt) a failure
    after it ends the retries, and no wait runs past it; without one, retries go on until stopped.
    """

    retry_on: tuple[type[BaseException], ...]
    initial: float = 0.1
    maximum: float = 1.0
    jitter: float = 0.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not self.retry_on:
            raise ValueError("RetryPolicy.retry_on: name at least one exception type to retry")
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(f"RetryPolicy: need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"RetryPolicy.jitter: expected a fraction in [0, 1), got {self.jitter}")


class RetriesExhausted(Exception):
    """An operation still failed when its retry budget ran out, or when its caller stopped it."""

    def __init__(self, what: str, attempts: int, last_error: BaseException | None, *, stopped: bool) -> None:
        why = "stopped" if stopped else "gave up"
        detail = f": {type(last_error).__name__}: {last_error}" if last_error is not None else ""
        super().__init__(f"{what}: {why} after {attempts} attempt(s){detail}")
        self.what = what
        self.attempts = attempts
        self.last_error = last_error
        self.stopped = stopped


def sleep_unless(stop: asyncio.Event) -> Sleep:
    """A sleep that ends early when ``stop`` is set (pair it with ``stopped=stop.is_set``)."""

    async def sleep(seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass

    return sleep


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    stopped: Callable[[], bool] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Sleep | None = None,
    clock: Callable[[], float] | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Await ``fn()`` until it succeeds; retry only ``policy.retry_on``, waiting with backoff.

    Args:
        what: names the operation in the error and in logs.
        stopped: checked after each failure and after each wait; when true, give up without another
            attempt (e.g. the service is closing).
        on_retry: called before each wait with (attempt number, the error, the wait in seconds).

    Raises:
        RetriesExhausted: the deadline passed or ``stopped`` said so; ``last_error`` is the cause.
        Any exception not in ``policy.retry_on``, unchanged, on the attempt that raised it.
    """
    now = clock or asyncio.get_running_loop().time
    started = now()

    def remaining() -> float | None:
        return None if policy.deadline is None else policy.deadline - (now() - started)

    def stop(state: tenacity.RetryCallState) -> bool:
        left = remaining()
        return (stopped is not None and stopped()) or (left is not None and left <= 0)

    def wait(state: tenacity.RetryCallState) -> float:
        delay = min(policy.initial * 2.0 ** (state.attempt_number - 1), policy.maximum)
        if policy.jitter:
            delay *= uniform(1 - policy.jitter, 1 + policy.jitter)
        left = remaining()
        return delay if left is None else min(delay, max(left, 0.01))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(state.attempt_number, error, state.next_action.sleep)

    def give_up(state: tenacity.RetryCallState) -> T:
        error = state.outcome.exception() if state.outcome is not None else None
        raise RetriesExhausted(
            what, state.attempt_number, error, stopped=stopped is not None and stopped()
        ) from error

    retrying = tenacity.AsyncRetrying(
        sleep=sleep or asyncio.sleep,
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception_type(policy.retry_on),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )

    attempts = 0
    last: BaseException | None = None

    async def attempt() -> T:  # tenacity awaits only what it sees is a coroutine function
        nonlocal attempts, last
        if attempts and stopped is not None and stopped():  # stopped during the wait: no new attempt
            raise RetriesExhausted(what, attempts, last, stopped=True) from last
        attempts += 1
        try:
            return await fn()
        except BaseException as exc:
            last = exc
            raise

    return await retrying(attempt)


async def retry_unless_stopped(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    stop: asyncio.Event,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T | None:
    """:func:`retry` until ``stop`` is set; then None (at once: ``stop`` also ends a wait).

    Raises:
        RetriesExhausted: only when ``policy.deadline`` passed first.
    """
    if stop.is_set():
        return None
    try:
        return await retry(
            fn, what=what, policy=policy, stopped=stop.is_set, on_retry=on_retry, sleep=sleep_unless(stop)
        )
    except RetriesExhausted as exc:
        if exc.stopped:
            return None
        raise
