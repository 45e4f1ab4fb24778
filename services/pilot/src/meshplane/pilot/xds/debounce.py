"""Istio's debounce: wait for a quiet period (DEBOUNCE_AFTER), never longer than DEBOUNCE_MAX.

Events merge into one pending PushRequest; only one push runs at a time. With EDS debounce
off, endpoint-only requests skip the wait.

A push that raises does not stop the loop: the error is logged with its traceback and reported
through ``on_error`` (Pilot counts it as ``pilot_xds_push_context_errors``), and the failed
request is kept and merged into the next push, so no change is lost. Without a newer change the
failed request is retried on its own after a backoff (DEBOUNCE_AFTER doubling up to
DEBOUNCE_MAX). :attr:`Debouncer.last_error` says whether the last push failed, for readiness.

The clock and the sleep are injectable so tests drive time explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from meshplane.pilot.model.push_request import PushRequest

PushFn = Callable[[PushRequest], Coroutine[Any, Any, None]]

log = logging.getLogger("meshplane.pilot.debounce")


class _Wake:
    """Queued after a failed push so the loop re-reads its retry timer."""


_WAKE = _Wake()


class Debouncer:
    def __init__(
        self,
        push: PushFn,
        after: float,
        maximum: float,
        eds_debounce: bool,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._push = push
        self._after = after
        self._max = maximum
        self._eds_debounce = eds_debounce
        self._on_error = on_error
        self._clock = clock
        self._sleep = sleep
        self._events: asyncio.Queue[PushRequest | _Wake] = asyncio.Queue()
        self._pending: PushRequest | None = None  # merged changes waiting for the quiet period
        self._first = self._last = 0.0  # when the first and the last of them arrived
        self._failed: PushRequest | None = None  # changes of failed pushes, not yet pushed
        self._push_task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._failures_in_a_row = 0
        #: ``repr`` of the last push's exception while it has not been followed by a good push
        self.last_error: str | None = None

    def submit(self, req: PushRequest) -> None:
        self._events.put_nowait(req)

    async def run(self) -> None:
        """The push loop. Merged changes and the push in flight live on the instance, so a
        restarted loop loses no change and still runs one push at a time."""
        while True:
            item = await self._next(self._timeout())
            if isinstance(item, PushRequest):
                if not item.full and not self._eds_debounce:
                    await self._push_safely(item)
                    continue
                now = self._clock()
                if self._pending is None:
                    self._first = now
                self._pending = item if self._pending is None else self._pending.merge(item)
                self._last = now
                continue
            if item is not None:
                continue  # woken after a failed push: recompute the timer
            if self._pending is None and (self._failed is None or self._clock() < self._retry_at):
                continue
            if self._push_task is not None and not self._push_task.done():
                await self._push_task  # one push at a time; events keep merging meanwhile
            to_push = self._take_pending()
            if to_push is not None:
                self._push_task = asyncio.create_task(self._push_safely(to_push))

    def _timeout(self) -> float | None:
        now = self._clock()
        if self._pending is not None:
            return max(min(self._after - (now - self._last), self._max - (now - self._first)), 0.0)
        if self._failed is not None:
            return max(self._retry_at - now, 0.0)
        return None

    async def _next(self, timeout: float | None) -> PushRequest | _Wake | None:
        """The next event, or None once ``timeout`` seconds (on the injected clock) have passed."""
        if not self._events.empty():
            return self._events.get_nowait()
        if timeout is None:
            return await self._events.get()
        get = asyncio.ensure_future(self._events.get())
        timer = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait((get, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not get.done():
                get.cancel()
        return get.result() if get.done() and not get.cancelled() else None

    def _take_pending(self) -> PushRequest | None:
        """Everything to push now: the pending changes and those of failed pushes."""
        pending, self._pending = self._pending, None
        failed, self._failed = self._failed, None
        if failed is None:
            return pending
        return failed if pending is None else failed.merge(pending)

    async def _push_safely(self, req: PushRequest) -> None:
        try:
            await self._push(req)
        except Exception as exc:
            self._failures_in_a_row += 1
            delay = min(self._after * 2**self._failures_in_a_row, max(self._max, self._after))
            self._retry_at = self._clock() + delay
            self._failed = req if self._failed is None else self._failed.merge(req)
            self.last_error = repr(exc)
            log.exception(
                "push failed (%d in a row): %s; its changes are pushed again within %.1fs",
                self._failures_in_a_row,
                ", ".join(req.reason) or "no reason given",
                delay,
            )
            if self._on_error is not None:
                self._on_error(exc)
            self._events.put_nowait(_WAKE)
            return
        if self._failed is None:  # an EDS-only push in between does not clear an earlier failure
            self._failures_in_a_row = 0
            self.last_error = None
