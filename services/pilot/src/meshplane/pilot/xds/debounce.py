"""Istio's debounce: wait for a quiet period (DEBOUNCE_AFTER), never longer than DEBOUNCE_MAX.

Events merge into one pending PushRequest; only one push runs at a time. With EDS debounce
off, endpoint-only requests skip the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from meshplane.pilot.model.push_request import PushRequest

PushFn = Callable[[PushRequest], Coroutine[Any, Any, None]]


class Debouncer:
    def __init__(self, push: PushFn, after: float, maximum: float, eds_debounce: bool) -> None:
        self._push = push
        self._after = after
        self._max = maximum
        self._eds_debounce = eds_debounce
        self._events: asyncio.Queue[PushRequest] = asyncio.Queue()

    def submit(self, req: PushRequest) -> None:
        self._events.put_nowait(req)

    async def run(self) -> None:
        pending: PushRequest | None = None
        first = last = 0.0
        push_task: asyncio.Task[None] | None = None
        while True:
            timeout: float | None = None
            if pending is not None:
                now = time.monotonic()
                quiet_left = self._after - (now - last)
                max_left = self._max - (now - first)
                timeout = max(min(quiet_left, max_left), 0.0)
            try:
                req = (
                    await asyncio.wait_for(self._events.get(), timeout)
                    if timeout is not None
                    else await self._events.get()
                )
            except TimeoutError:
                req = None
            if req is not None:
                if not req.full and not self._eds_debounce:
                    await self._push(req)
                    continue
                now = time.monotonic()
                if pending is None:
                    first = now
                pending = req if pending is None else pending.merge(req)
                last = now
                continue
            if pending is None:
                continue
            if push_task is not None and not push_task.done():
                await push_task  # one push at a time; events keep merging meanwhile
            to_push, pending = pending, None
            push_task = asyncio.create_task(self._push(to_push))
