"""Trace context in NATS message headers (W3C traceparent/tracestate via OpenTelemetry)."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Return headers carrying the current trace context (plus any given)."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by a message's headers (empty context when none)."""
    return propagate.extract(dict(headers or {}))
