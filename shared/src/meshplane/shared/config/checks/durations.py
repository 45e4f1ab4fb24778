"""Durations as Istio's YAML writes them ("1.5s", "100ms", "1h30m") and Istio's duration rule."""

from __future__ import annotations

import re
from datetime import timedelta

from meshplane.shared.config.checks.memo import cached_text_check

_UNITS_US: dict[str, float] = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1000.0,
    "s": 1_000_000.0,
    "m": 60_000_000.0,
    "h": 3_600_000_000.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_ONE_MS = timedelta(milliseconds=1)


@cached_text_check
def parse_duration(text: str) -> timedelta:
    """Parse a Go / protobuf-JSON duration string such as ``1.5s``, ``100ms`` or ``1h2m``.

    Raises:
        ValueError: naming the text when it is not a duration.
    """
    raw = text.strip()
    sign = 1
    body = raw
    if body[:1] in "+-" and body:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return timedelta(0)
    pos = 0
    total_us = 0.0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (expected e.g. '1.5s', '100ms', '1h30m')")
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f"invalid duration {text!r} (expected e.g. '1.5s', '100ms', '1h30m')")
    return timedelta(microseconds=sign * round(total_us))


def format_duration(value: timedelta) -> str:
    """The protobuf-JSON form of a duration: seconds with up to microsecond decimals, e.g. ``1.5s``."""
    seconds = value / timedelta(seconds=1)
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text}s"


def check_duration(value: timedelta) -> str | None:
    """Istio's duration rule: at least 1ms, with millisecond precision."""
    if value < _ONE_MS:
        return "duration must be greater than 1ms"
    if value % _ONE_MS:
        return "only durations to ms precision are supported"
    return None
