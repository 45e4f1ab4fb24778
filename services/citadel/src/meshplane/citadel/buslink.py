"""Reaching the bus from citadel and the node agent: keep trying until connected or stopped.

The CA and the agents must keep serving while the bus is away, so a missing bus is logged and
retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meshplane.shared.bus import Bus, BusError, BusOptions

log = logging.getLogger(__name__)


async def connect_until_stopped(url: str, stop: asyncio.Event, purpose: str) -> Bus | None:
    """A connected Bus, or None once ``stop`` is set first."""
    while not stop.is_set():
        connect = asyncio.create_task(Bus.connect(BusOptions(url=url, connect_timeout=10.0)))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if connect not in done:
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, BusError):
                await connect
            return None
        try:
            return connect.result()
        except BusError as exc:
            log.warning("bus at %s not reachable (%s), retrying: %s", url, purpose, exc)
    return None
