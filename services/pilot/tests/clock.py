"""A manual clock for tests: time moves only when the test advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools

#: loop turns given to woken tasks after each step; enough for a debouncer round and a push
SETTLE_TURNS = 50


class ManualClock:
    """``clock()`` reads the time; ``sleep`` waits until :meth:`advance` moves time past its deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline (in order), then settle."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue  # a cancelled sleep
            self.now = max(self.now, due)
            fut.set_result(None)
            await settle()
        self.now = target
        await settle()


async def settle() -> None:
    """Let every task that is ready run until it blocks again (a bounded number of loop turns)."""
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)
