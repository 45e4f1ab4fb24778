"""Go-style durations (``1.5s``, ``100ms``, ``1h30m``): the one parser every service uses.

The grammar is Go's ``time.ParseDuration``, which Istio's YAML, flags and environment knobs use:
an optional sign, then one or more ``<number><unit>`` parts with units ``ns``, ``us`` (``µs``),
``ms``, ``s``, ``m`` and ``h``; a bare ``0`` is zero. Two extensions are opt-in, for the settings
that have always accepted them: a bare number meaning seconds, and the unit ``d`` (days).
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS_US: dict[str, float] = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1000.0,
    "s": 1_000_000.0,
    "m": 60_000_000.0,
    "h": 3_600_000_000.0,
    "d": 86_400_000_000.0,
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(_NUMBER + r"(ns|us|µs|μs|ms|s|m|h|d)")
_BARE = re.compile(_NUMBER)
_EXAMPLES = "expected e.g. '1.5s', '100ms', '1h30m'"


def parse_duration(
    text: str, *, bare_seconds: bool = False, days: bool = False, signed: bool = True
) -> timedelta:
    """Parse ``text`` as a Go duration; microsecond precision (that of ``timedelta``).

    Args:
        bare_seconds: also accept a plain number (``"30"``, ``"0.5"``) as seconds.
        days: also accept the unit ``d`` (not Go's; some settings have always taken ``90d``).
        signed: accept a leading ``+`` or ``-`` (Go does); ``False`` for values that cannot be negative.

    Raises:
        ValueError: naming the text when it is not a duration.
    """
    raw = text.strip()
    body = raw
    sign = 1
    if signed and body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        raise ValueError(f"invalid duration {text!r} ({_EXAMPLES})")
    if body == "0":
        return timedelta(0)
    if bare_seconds and _BARE.fullmatch(body):
        return timedelta(seconds=sign * float(body))
    pos = 0
    total_us = 0.0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None or (m.group(2) == "d" and not days):
            raise ValueError(f"invalid duration {text!r} ({_EXAMPLES})")
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    return timedelta(microseconds=sign * round(total_us))
