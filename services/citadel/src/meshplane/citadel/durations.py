"""Citadel's duration settings (``90s``, ``1h30m``, ``87600h``, ``500ms``, ``20``, ``90d``).

The grammar is the shared Go-duration parser's, with the two extensions Citadel's settings have
always accepted (a bare number of seconds, the unit ``d``) and no sign: a TTL cannot be negative.
"""

from __future__ import annotations

import datetime as dt

from meshplane.shared import durations


def parse_duration(text: str) -> dt.timedelta:
    """Parse a Citadel duration setting. Raises ValueError naming the bad text."""
    return durations.parse_duration(text, bare_seconds=True, days=True, signed=False)
