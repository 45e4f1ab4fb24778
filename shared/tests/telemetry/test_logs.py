"""JSON log lines carry the trace and span of the work that wrote them."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from meshplane.shared.telemetry.logs import JsonFormatter


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("meshplane.pilot.push", logging.INFO, __file__, 1, msg, None, None)


def test_log_inside_a_span_names_its_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("pilot.push") as span:
        line = json.loads(JsonFormatter().format(record("pushed")))
    ctx = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert (line["scope"], line["msg"]) == ("meshplane.pilot.push", "pushed")
    outside = json.loads(JsonFormatter().format(record("idle")))
    assert "trace_id" not in outside and "span_id" not in outside
