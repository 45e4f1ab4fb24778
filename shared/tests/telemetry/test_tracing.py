"""A trace crosses the bus: a span started from a message's headers joins the publisher's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from meshplane.shared.bus import inject_headers
from meshplane.shared.telemetry import FileSpanExporter, start_span_from_headers
from meshplane.shared.telemetry.tracing import carried_context, record_span
from meshplane.shared.testing.otlp import OtlpReceiver


def test_span_from_headers_continues_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(out)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("galley.publish"):
        headers = inject_headers()
    with tracer.start_as_current_span("other.change"):
        other = inject_headers()
    with start_span_from_headers(tracer, "pilot.push", headers, links_from=[other]):
        pass
    spans = {s["name"]: s for s in map(json.loads, out.read_text().splitlines())}
    assert spans["pilot.push"]["trace_id"] == spans["galley.publish"]["trace_id"]
    assert spans["pilot.push"]["parent_id"] == spans["galley.publish"]["span_id"]
    other_span = spans["other.change"]
    assert spans["pilot.push"]["links"] == [
        {"trace_id": other_span["trace_id"], "span_id": other_span["span_id"]}
    ]


def test_recorded_span_keeps_parent_links_and_error(tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(out)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("push.a") as a:
        first = carried_context({**inject_headers(), "Nats-Expected-Stream": "x"})
        start = a.get_span_context()
    with tracer.start_as_current_span("push.b"):
        second = carried_context(inject_headers())
    assert set(first) == {"traceparent"}
    record_span(tracer, "ack", [first, second], 1_000, {"nonce": "7"}, error="rejected: bad route")
    ack = next(s for s in map(json.loads, out.read_text().splitlines()) if s["name"] == "ack")
    assert ack["parent_id"] == f"{start.span_id:016x}"
    assert ack["trace_id"] == f"{start.trace_id:032x}"
    assert len(ack["links"]) == 1
    assert (ack["start_ns"], ack["attributes"]) == (1_000, {"nonce": "7"})
    assert (ack["status"], ack["status_message"]) == ("ERROR", "rejected: bad route")
    assert carried_context(None) == {}


def test_trace_file_from_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.jsonl"
    code = (
        "from meshplane.shared.telemetry import configure_tracing\n"
        "p = configure_tracing('svc')\n"
        "with p.get_tracer('t').start_as_current_span('hello'): pass\n"
        "p.shutdown()\n"
    )
    env = dict(os.environ, MESHPLANE_TRACE_FILE=str(out), OTEL_TRACES_EXPORTER="none")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    (span,) = map(json.loads, out.read_text().splitlines())
    assert (span["name"], span["service"]) == ("hello", "svc")


def test_otlp_trace_export_from_standard_variables(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=otlp + OTEL_EXPORTER_OTLP_ENDPOINT: spans reach a real OTLP receiver."""
    receiver = OtlpReceiver().start()
    try:
        code = (
            "from meshplane.shared.telemetry import configure_tracing\n"
            "p = configure_tracing('meshplane-pilot')\n"
            "with p.get_tracer('t').start_as_current_span('pilot.push'): pass\n"
            "p.shutdown()\n"
        )
        env = dict(os.environ, OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        env.pop("MESHPLANE_TRACE_FILE", None)
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
        assert receiver.traces.span_names == [("meshplane-pilot", "pilot.push")]
    finally:
        receiver.stop()


def test_no_exporter_keeps_tracing_free() -> None:
    """Without OTEL_TRACES_EXPORTER or a trace file, spans stay no-op (nothing recorded, nothing paid)."""
    code = (
        "from opentelemetry import trace\n"
        "from meshplane.shared.telemetry import configure_tracing\n"
        "configure_tracing('svc')\n"
        "with trace.get_tracer('t').start_as_current_span('x') as span:\n"
        "    assert not span.is_recording(), 'span recorded with no exporter'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MESHPLANE_TRACE"))}
    env["OTEL_TRACES_EXPORTER"] = "none"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
