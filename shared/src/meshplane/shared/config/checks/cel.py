"""CEL expressions (Telemetry access-log filters), parsed with the ``cel-python`` library."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _environment() -> Any:
    import celpy  # imported on first use: only Telemetry filters need it

    return celpy.Environment()


def check_cel(expression: str) -> str | None:
    """None when ``expression`` parses as CEL, else the parser's complaint (first line)."""
    if not expression.strip():
        return "filter expression must not be empty"
    from celpy.celparser import CELParseError

    try:
        _environment().compile(expression)
    except CELParseError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        return f"invalid CEL expression {expression!r}: {detail}"
    return None
