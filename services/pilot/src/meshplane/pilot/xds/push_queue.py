"""Pending pushes, one entry per connection: a new request merges into a queued one.

A connection being pushed when another request arrives is queued again after it finishes
(Istio's pushqueue semantics). ``push_throttle`` workers drain the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.xds.connection import Connection

log = logging.getLogger(__name__)

PushOne = Callable[[Connection, PushRequest], Awaitable[None]]


class PushQueue:
    def __init__(self, push: PushOne, workers: int) -> None:
        self._push = push
        self._workers = workers
        self._queue: asyncio.Queue[Connection] = asyncio.Queue()
        self._queued: set[str] = set()
        self._in_flight: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def enqueue(self, conn: Connection, req: PushRequest) -> None:
        conn.pending = req if conn.pending is None else conn.pending.merge(req)
        if conn.id in self._queued or conn.id in self._in_flight:
            return
        self._queued.add(conn.id)
        self._queue.put_nowait(conn)

    def pending(self) -> int:
        return self._queue.qsize() + len(self._in_flight)

    async def _worker(self) -> None:
        while True:
            conn = await self._queue.get()
            self._queued.discard(conn.id)
            req, conn.pending = conn.pending, None
            if conn.closed or req is None:
                continue
            self._in_flight.add(conn.id)
            try:
                await conn.initialized.wait()
                await self._push(conn, req)
            except Exception:
                log.exception("push to %s failed", conn.id)
            finally:
                self._in_flight.discard(conn.id)
            if conn.pending is not None and not conn.closed and conn.id not in self._queued:
                self._queued.add(conn.id)
                self._queue.put_nowait(conn)
