"""Structured JSON logs on stderr, one object per line; logger names are the scopes.

A record written inside a span carries ``trace_id`` and ``span_id``, so the logs of a slow
config change can be found from its trace and the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with time, level, scope, message and any extras."""

    _RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "scope": record.name,
            "msg": record.getMessage(),
        }
        span_ctx = trace.get_current_span().get_span_context()
        if span_ctx.is_valid:
            out["trace_id"] = f"{span_ctx.trace_id:032x}"
            out["span_id"] = f"{span_ctx.span_id:016x}"
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger: JSON by default, ``MESHPLANE_LOG_FORMAT=text`` for people."""
    level = (level or os.environ.get("MESHPLANE_LOG_LEVEL", "info")).upper()
    fmt = fmt or os.environ.get("MESHPLANE_LOG_FORMAT", "json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("nats", "uvicorn.access", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
