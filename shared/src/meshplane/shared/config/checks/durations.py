"""Durations in Istio's YAML: the shared parser (memoised for the webhook) and Istio's duration rule."""

from __future__ import annotations

from datetime import timedelta

from meshplane.shared import durations
from meshplane.shared.config.checks.memo import cached_text_check

_ONE_MS = timedelta(milliseconds=1)


@cached_text_check
def parse_duration(text: str) -> timedelta:
    """Parse a Go / protobuf-JSON duration string such as ``1.5s``, ``100ms`` or ``1h2m``.

    Raises:
        ValueError: naming the text when it is not a duration.
    """
    return durations.parse_duration(text)


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
