"""The one table layout of meshctl's output."""

from __future__ import annotations

import pytest

from meshplane.ctl.tables import render


def test_columns_are_padded_two_spaces_apart_without_trailing_blanks() -> None:
    rows = [["nats-server", "7", "nats.log"], ["pilot", "12345", ""]]
    text = render(["NAME", "PID", "LOG"], rows, right={1})
    assert text.splitlines() == [
        "NAME           PID  LOG",
        "nats-server      7  nats.log",
        "pilot        12345",
    ]


def test_headers_alone_and_a_short_row_is_refused() -> None:
    assert render(["A", "BB"], []) == "A  BB"
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        render(["A", "BB"], [["x"]])
