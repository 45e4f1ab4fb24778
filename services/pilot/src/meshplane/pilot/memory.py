"""Give freed memory back to the OS after bursts of pushes.

A push storm allocates response buffers for every proxy at once; after they are written glibc
keeps the pages. ``Trimmer`` calls ``malloc_trim`` once the push queue is idle after activity,
at most every ``interval`` seconds. On a libc without ``malloc_trim`` it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return fn


async def trim_when_idle(
    activity: Callable[[], int], busy: Callable[[], bool], interval: float = 5.0
) -> None:
    """Loop forever: when ``activity()`` changed and ``busy()`` is false, trim the heap."""
    trim = _malloc_trim()
    if trim is None:
        log.info("malloc_trim not available; memory is not trimmed after pushes")
        return
    seen = activity()
    while True:
        await asyncio.sleep(interval)
        now = activity()
        if now != seen and not busy():
            seen = now
            trim(0)
