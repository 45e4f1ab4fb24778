"""The one Go-duration parser, and the inputs each former parser's call sites give it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshplane.shared.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5s", timedelta(seconds=1.5)),
        ("100ms", timedelta(milliseconds=100)),
        ("1h30m", timedelta(minutes=90)),
        ("2h45m0.5s", timedelta(hours=2, minutes=45, seconds=0.5)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("1500ns", timedelta(microseconds=2)),
        (".5s", timedelta(milliseconds=500)),
        ("-1.5h", timedelta(minutes=-90)),
        ("+3s", timedelta(seconds=3)),
        ("0", timedelta(0)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_go_grammar(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "-", "10", "1.5", "h", "10x", "1h 30m", "90d", "1s-", "1e3s"])
def test_go_grammar_rejects_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid duration {text!r}"):
        parse_duration(text)


def test_bare_seconds_and_days_are_opt_in() -> None:
    assert parse_duration("20", bare_seconds=True) == timedelta(seconds=20)
    assert parse_duration("0.25", bare_seconds=True) == timedelta(milliseconds=250)
    assert parse_duration("90d", days=True) == timedelta(days=90)
    assert parse_duration("1d12h", days=True) == timedelta(hours=36)


def test_unsigned_rejects_a_sign() -> None:
    with pytest.raises(ValueError, match="invalid duration '-5s'"):
        parse_duration("-5s", signed=False)
