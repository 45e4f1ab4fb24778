"""OpenTelemetry tracing set-up: one call in each service's ``__main__``.

Exporters are chosen by the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
``none``; a comma list) with ``OTEL_EXPORTER_OTLP_ENDPOINT`` and friends for OTLP. When neither is
set nothing is exported. ``MESHPLANE_TRACE_FILE=PATH`` additionally appends every finished span
to PATH as one JSON object per line, which is how tests and ``meshctl up`` read traces without a
collector.

A config change is one trace: Galley starts it, the bus carries its context in message headers
(:mod:`meshplane.shared.bus.tracing`), Pilot continues it with :func:`start_span_from_headers`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Span, Status, StatusCode

from meshplane.shared.bus.tracing import extract_context


class FileSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line (safe across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_to_dict(s), default=str) + "\n" for s in spans]
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    """A flat JSON-friendly view of a span (ids as hex)."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "service": span.resource.attributes.get("service.name", ""),
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_id": f"{parent.span_id:016x}" if parent else "",
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "status": span.status.status_code.name,
        "status_message": span.status.description or "",
    }


def configure_tracing(service_name: str, instance: str = "") -> TracerProvider:
    """Install a TracerProvider for this process with the exporters the environment asks for."""
    attrs: dict[str, str] = {"service.name": service_name}
    if instance:
        attrs["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attrs))
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        names = ["otlp"]
    names = [n for n in names if n != "none"]
    for name in names:
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace_file = os.environ.get("MESHPLANE_TRACE_FILE")
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(Path(trace_file))))
    if names or trace_file:
        trace.set_tracer_provider(provider)
    # else: keep OpenTelemetry's no-op provider, so spans (ours and FastAPI's per request) cost
    # nothing when no one collects them; the returned provider is then unused.
    return provider


def carried_context(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Only the trace-propagation fields of ``headers`` (``traceparent``/``tracestate``), if any.

    Work that is queued and merged (a push request) keeps these small dicts instead of whole
    message headers; an empty dict means the message carried no trace.
    """
    if not headers:
        return {}
    fields = propagate.get_global_textmap().fields
    return {k: v for k, v in headers.items() if k in fields}


def current_headers() -> dict[str, str]:
    """The current span's context as propagation headers (to hand on to queued work)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _links(others: Sequence[Mapping[str, str]]) -> list[Link]:
    links = []
    for other in others:
        span_ctx = trace.get_current_span(extract_context(other)).get_span_context()
        if span_ctx.is_valid:
            links.append(Link(span_ctx))
    return links


def record_span(
    tracer: trace.Tracer,
    name: str,
    parents: Sequence[Mapping[str, str]],
    start_ns: int,
    attributes: Mapping[str, str | int | float | bool],
    error: str = "",
) -> None:
    """Record an already finished piece of work (``start_ns`` until now) under ``parents[0]``.

    Used for what is only known to have happened once it is over, such as a proxy's ACK of a
    push: the span runs from the send to the ACK. The other ``parents`` become links; a
    non-empty ``error`` gives the span an error status with that message.
    """
    parent = extract_context(parents[0]) if parents else otel_context.Context()
    span = tracer.start_span(
        name, context=parent, links=_links(parents[1:]), attributes=attributes, start_time=start_ns
    )
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


@contextmanager
def start_span_from_headers(
    tracer: trace.Tracer,
    name: str,
    headers: Mapping[str, str] | None,
    links_from: Sequence[Mapping[str, str]] = (),
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """Start a span whose parent is the context carried by bus message ``headers``.

    ``links_from`` adds links to other messages' contexts, for work that merges several changes
    (a debounced push): the first change is the parent, the others are linked.
    """
    parent = extract_context(headers)
    links = _links(links_from)
    with tracer.start_as_current_span(name, context=parent, links=links, attributes=attributes) as span:
        yield span
