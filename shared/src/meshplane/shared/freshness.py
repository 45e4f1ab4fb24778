"""Telling records a live writer keeps refreshing from records a dead writer left behind.

Some bus records (proxy status, component announcements) are rewritten by their writer every
few seconds with an ``updated`` time. A writer that dies without cleaning up (SIGKILL, OOM, node
loss) stops refreshing, so readers hide records older than a staleness limit and live writers
delete records older than a (longer) collection limit. Clocks of writers and readers are assumed
to agree to within a few seconds (NTP), well inside the margin between refresh and staleness.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TypeVar

from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import TypedKV

log = logging.getLogger(__name__)

#: the record types that carry an ``updated`` refresh time
Refreshed = TypeVar("Refreshed", status_pb2.ProxyStatus, status_pb2.ComponentInfo)


def age_seconds(record: status_pb2.ProxyStatus | status_pb2.ComponentInfo, now: float | None = None) -> float:
    """Seconds since the writer last refreshed ``record`` (infinite if it never set the time)."""
    if not record.HasField("updated") or not (record.updated.seconds or record.updated.nanos):
        return float("inf")
    current = time.time() if now is None else now
    return current - (record.updated.seconds + record.updated.nanos / 1e9)


async def sweep_unrefreshed(
    kv: TypedKV[Refreshed],
    gc_after: float,
    now: float | None = None,
    what: str = "records",
    prefix: str = "",
) -> int:
    """Delete records nobody refreshed for ``gc_after`` seconds (their writer died); the count.

    Only keys starting with ``prefix``: a component may delete only the records its bus identity
    may write (``meshplane.shared.bus.identities``)."""
    try:
        records = await kv.items()
    except Exception as exc:
        log.warning("reading %s for cleanup failed: %s", what, exc)
        return 0
    stale = [k for k, rec in records.items() if k.startswith(prefix) and age_seconds(rec, now) > gc_after]
    for key in stale:
        with contextlib.suppress(Exception):
            await kv.delete(key)
    if stale:
        log.info("removed %d %s unrefreshed for %.0fs", len(stale), what, gc_after)
    return len(stale)
