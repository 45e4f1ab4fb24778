"""Running a service process: signal handling, ordered shutdown, a clean exit code.

Each service's ``__main__`` builds an async ``run(stop)`` coroutine that starts its servers,
sets readiness, waits for ``stop`` and shuts down in order; :func:`run_service` does the rest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


def run_service(name: str, main: ServiceMain) -> int:
    """Run ``main`` until SIGTERM/SIGINT sets its stop event; return the exit code."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("%s starting", name)
        await main(stop)
        log.info("%s stopped", name)

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("%s failed", name)
        return 1
    return 0


def parse_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``:PORT`` or ``[v6]:PORT`` into (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or default_host
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, number
