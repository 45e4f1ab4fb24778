"""Reaching the bus from citadel and the node agent: keep trying until connected or stopped.

The CA and the agents must keep serving while the bus is away, so a missing bus is logged and
retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meshplane.shared.bus import Bus, BusError, BusOptions
from meshplane.shared.retry import RetryPolicy, retry_unless_stopped

log = logging.getLogger(__name__)


#: Between connection attempts (each waits up to 10 s for the server): 0.1 s doubling to 1 s.
_CONNECT_RETRY = RetryPolicy(retry_on=(BusError,), initial=0.1, maximum=1.0)


async def connect_until_stopped(url: str, stop: asyncio.Event, purpose: str, identity: str) -> Bus | None:
    """A connected Bus (as bus identity ``identity``), or None once ``stop`` is set first."""

    async def attempt() -> Bus | None:
        connect = asyncio.create_task(
            Bus.connect(BusOptions(url=url, connect_timeout=10.0, identity=identity))
        )
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if connect not in done:
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, BusError):
                await connect
            return None
        return connect.result()

    def warn(_attempt: int, exc: BaseException, _wait: float) -> None:
        log.warning("bus at %s not reachable (%s), retrying: %s", url, purpose, exc)

    return await retry_unless_stopped(
        attempt, what=f"bus connect to {url} ({purpose})", policy=_CONNECT_RETRY, stop=stop, on_retry=warn
    )
