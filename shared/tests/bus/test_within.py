"""``within``: a timed-out operation that swallows a cancel (as nats-py's first-connection loop
can, between attempts) is cancelled again until it ends, and the caller gets its timeout."""

from __future__ import annotations

import asyncio

import pytest

from meshplane.shared.bus.client import within


class Retrying:
    """A connect loop that retries forever (each attempt waits on a server that never answers)
    and loses the first ``swallow`` cancels."""

    def __init__(self, swallow: int) -> None:
        self.swallow = swallow
        self.cancels = 0
        self.started = asyncio.Event()
        self.ended = False

    async def run(self) -> None:
        self.started.set()
        try:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancels += 1
                    if self.cancels > self.swallow:
                        raise
        finally:
            self.ended = True


async def test_a_swallowed_cancel_is_repeated_until_the_operation_ends() -> None:
    loop = Retrying(swallow=2)
    async with asyncio.timeout(10):  # asyncio.wait_for would wait on it forever
        with pytest.raises(TimeoutError, match="gave up after 0.1s"):
            await within(loop.run(), 0.1)
    assert loop.ended and loop.cancels == 3


async def test_a_result_in_time_is_returned_and_an_error_raised() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise ConnectionRefusedError("refused")

    assert await within(answer(), 1) == 42
    with pytest.raises(ConnectionRefusedError, match="refused"):
        await within(fail(), 1)


async def test_a_cancelled_caller_leaves_nothing_running() -> None:
    loop = Retrying(swallow=1)
    caller = asyncio.create_task(within(loop.run(), 30))
    await loop.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert loop.ended
