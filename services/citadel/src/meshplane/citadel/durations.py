"""Go-style durations (``90s``, ``1h30m``, ``87600h``, ``500ms``) as used by Istio's settings."""

from __future__ import annotations

import datetime as dt
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> dt.timedelta:
    """Parse a duration; a bare number means seconds. Raises ValueError naming the bad text."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return dt.timedelta(seconds=float(value))
    pos, total = 0, 0.0
    for m in _PART.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(value) or not value:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 90s, 30m, 24h, 1h30m)")
    return dt.timedelta(seconds=total)
