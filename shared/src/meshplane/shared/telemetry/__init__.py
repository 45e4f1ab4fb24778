"""Logging, tracing and metrics-export set-up shared by every service."""

from meshplane.shared.telemetry.logs import configure_logging
from meshplane.shared.telemetry.metrics import configure_metrics
from meshplane.shared.telemetry.tracing import FileSpanExporter, configure_tracing, start_span_from_headers

__all__ = [
    "FileSpanExporter",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "start_span_from_headers",
]
