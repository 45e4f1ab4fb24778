"""Pilot's duration inputs (settings knobs, generated proto Durations) through the shared parser."""

from __future__ import annotations

import pytest

from meshplane.pilot.generators.common import duration
from meshplane.pilot.settings import _duration


@pytest.mark.parametrize(
    ("raw", "seconds"), [("100ms", 0.1), ("10s", 10.0), ("20m", 1200.0), ("1h", 3600.0), ("2.5", 2.5)]
)
def test_pilot_settings(raw: str, seconds: float) -> None:
    assert _duration("PILOT_DEBOUNCE_AFTER", raw) == pytest.approx(seconds)


def test_pilot_settings_error_names_the_variable() -> None:
    with pytest.raises(
        ValueError, match="PILOT_DEBOUNCE_MAX: expected a duration such as 100ms or 10s, got '10x'"
    ):
        _duration("PILOT_DEBOUNCE_MAX", "10x")


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        ("1.5s", 1_500_000_000),
        ("100ms", 100_000_000),
        ("250us", 250_000),
        ("1m", 60_000_000_000),
        ("1h", 3_600_000_000_000),
        ("3", 3_000_000_000),
        (2, 2_000_000_000),
        (0.25, 250_000_000),
    ],
)
def test_pilot_generated_proto_durations(value: str | float, nanos: int) -> None:
    result = duration(value)
    assert result is not None
    assert result.ToNanoseconds() == nanos


def test_pilot_generated_proto_duration_absent() -> None:
    assert duration(None) is None
    assert duration("") is None
