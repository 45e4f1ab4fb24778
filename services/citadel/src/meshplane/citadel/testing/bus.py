"""Running one coroutine against the bus from a synchronous test (a fresh connection each time)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from meshplane.shared.bus import Bus, BusOptions

T = TypeVar("T")


def on_bus(url: str, fn: Callable[[Bus], Awaitable[T]]) -> T:
    async def run() -> T:
        bus = await Bus.connect(BusOptions(url=url))
        try:
            return await fn(bus)
        finally:
            await bus.close()

    return asyncio.run(run())
