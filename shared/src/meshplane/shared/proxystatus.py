"""How long a proxy-status record on the bus stays believable.

Every Pilot rewrites the record of each proxy connected to it every :data:`REFRESH_SECONDS`
(``updated`` is the time of that write). A Pilot that dies without cleaning up (SIGKILL, OOM,
node loss) stops refreshing, so readers such as ``meshctl proxy-status`` treat a record whose
``updated`` is older than :data:`STALE_AFTER_SECONDS` as gone, and live Pilots delete records
older than :data:`GC_AFTER_SECONDS` from the bucket. Clocks of writers and readers are assumed to
agree to within a few seconds (NTP), well inside the margin between refresh and staleness.
"""

from __future__ import annotations

from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.freshness import age_seconds

__all__ = ["GC_AFTER_SECONDS", "REFRESH_SECONDS", "STALE_AFTER_SECONDS", "age_seconds", "is_live"]

REFRESH_SECONDS = 10.0
STALE_AFTER_SECONDS = 30.0
GC_AFTER_SECONDS = 60.0


def is_live(status: status_pb2.ProxyStatus, now: float | None = None) -> bool:
    """True while the record's Pilot is still refreshing it."""
    return age_seconds(status, now) <= STALE_AFTER_SECONDS
