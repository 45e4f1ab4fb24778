"""Running short synchronous jobs that arrive close together back to back, on the event loop.

A CSR is signed in ~0.15 ms of OpenSSL and Python, but one at a time between gRPC's callbacks
it cost twice that, and every request woke the loop and gRPC's threads on its own. Holding
requests for a few milliseconds and signing them together keeps the crypto code hot in the
CPU's caches and lets gRPC send the responses in one burst: per CSR, the server's CPU falls
by ~40 % at saturation (``benchmarks/ca``, BENCHMARKS.md). Certificate requests come once per
workload per rotation, so a few milliseconds of latency is nothing to their callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Coalescer:
    """``await run(fn, *args)`` runs ``fn(*args)`` at the end of a window that the first waiting
    job opens, together with every job that arrived meanwhile (``max_batch`` at most: a full
    batch runs at once). A job whose caller was cancelled before its turn is skipped."""

    def __init__(self, window: float, max_batch: int = 64) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self.max_batch = max_batch
        self._jobs: list[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.append((fut, fn, args))
        if len(self._jobs) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        jobs, self._jobs = self._jobs, []
        for fut, fn, args in jobs:
            if fut.done():  # the caller gave up (its RPC was cancelled)
                continue
            try:
                fut.set_result(fn(*args))
            except Exception as exc:  # delivered to the job's own caller
                fut.set_exception(exc)
