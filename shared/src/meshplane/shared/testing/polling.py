"""Waiting on a condition in tests: poll until true or fail with what was awaited (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Poll ``check`` (a plain or a coroutine function) every 50 ms until it returns True; raise
    AssertionError naming ``what`` on timeout.

    The deadline also bounds a ``check`` that hangs (for example a read from a bus that is down).
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None
