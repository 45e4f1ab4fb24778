"""Push tracing: merged changes keep the first trace as parent and link the rest; answers become spans."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_request import MAX_TRACES, PushRequest
from meshplane.pilot.xds import tracing
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.debounce import Debouncer
from meshplane.shared.telemetry.tracing import carried_context, current_headers

from .clock import ManualClock

pytestmark = pytest.mark.timeout(30)

RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield memory
    provider.shutdown()


def changes(n: int) -> tuple[list[dict[str, str]], list[int]]:
    """``n`` finished ``galley.publish`` spans; their propagation headers and span ids."""
    tracer = tracing._tracer
    headers, ids = [], []
    for i in range(n):
        with tracer.start_as_current_span(f"galley.publish.{i}") as span:
            headers.append(carried_context({**current_headers(), "Nats-Msg-Id": str(i)}))
            ids.append(span.get_span_context().span_id)
    return headers, ids


def span_named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


async def test_debounced_push_parent_is_first_change_and_links_the_rest(
    exporter: InMemorySpanExporter,
) -> None:
    headers, ids = changes(3)
    assert all(set(h) == {"traceparent"} for h in headers)  # only the trace travels with the request
    pushed: asyncio.Queue[PushRequest] = asyncio.Queue()
    queued: list[PushRequest] = []

    async def push(req: PushRequest) -> None:
        with tracing.push_span(req, "pilot-0/v7") as to_queue:
            queued.append(to_queue)
        await pushed.put(req)

    clock = ManualClock()
    debouncer = Debouncer(push, after=0.2, maximum=5.0, eds_debounce=True, clock=clock, sleep=clock.sleep)
    runner = asyncio.create_task(debouncer.run())
    try:
        for i, h in enumerate(headers):
            debouncer.submit(PushRequest(full=True, kinds=frozenset({f"Kind{i}"}), traces=(h,)))
            await clock.advance(0.1)  # each change within the quiet period of the one before
        assert pushed.empty()
        await clock.advance(0.1)
        req = pushed.get_nowait()
    finally:
        runner.cancel()
    assert req.kinds == {"Kind0", "Kind1", "Kind2"}  # one push for the three changes
    assert req.traces == tuple(headers)

    span = span_named(exporter, "pilot.push")
    assert span.parent is not None and span.parent.span_id == ids[0]
    assert span.context.trace_id == span_named(exporter, "galley.publish.0").context.trace_id
    assert [link.context.span_id for link in span.links] == ids[1:]
    assert span.attributes is not None and span.attributes["pilot.merged_traces"] == 3
    # what goes on to the per-proxy queue carries the push span itself (for the ACK spans)
    (to_queue,) = queued
    (carried,) = to_queue.traces
    assert f"{span.context.span_id:016x}" in carried["traceparent"]


def test_merge_keeps_order_and_is_bounded() -> None:
    a = PushRequest(full=True, traces=({"traceparent": "a"},))
    untraced = PushRequest(full=False, eds_hosts=frozenset({"h"}))
    b = PushRequest(full=True, traces=({"traceparent": "b"},))
    assert a.merge(untraced).merge(b).traces == ({"traceparent": "a"}, {"traceparent": "b"})
    assert untraced.merge(b).traces == ({"traceparent": "b"},)
    many = PushRequest()
    for i in range(MAX_TRACES + 5):
        many = many.merge(PushRequest(traces=({"traceparent": str(i)},)))
    assert len(many.traces) == MAX_TRACES and many.traces[0] == {"traceparent": "0"}


def connection() -> Connection:
    proxy = Proxy(
        type=ProxyType.SIDECAR,
        ip="10.0.0.1",
        id="client-1.default",
        dns_domain="default.svc.cluster.local",
        node_id="sidecar~10.0.0.1~client-1.default~default.svc.cluster.local",
        namespace="default",
    )
    return Connection(proxy, "ipv4:10.0.0.1:5000", delta=False)


def test_ack_and_nack_of_a_traced_push_become_spans(exporter: InMemorySpanExporter) -> None:
    (parent,), (parent_id,) = changes(1)
    req = PushRequest(full=True, traces=(parent,))
    conn = connection()
    w = conn.watch(RDS)

    w.nonce_sent, w.version_sent = "1", "pilot-0/v1"
    tracing.remember_send(w, req, nonce_before="")
    tracing.record_answer(conn, w, "0")  # a stale nonce answers nothing
    assert not [s for s in exporter.get_finished_spans() if s.name == "pilot.xds.ack"]
    tracing.record_answer(conn, w, "1")
    ack = span_named(exporter, "pilot.xds.ack")
    assert ack.parent is not None and ack.parent.span_id == parent_id
    assert dict(ack.attributes or {}) == {
        "xds.proxy_id": "client-1.default",
        "xds.type_url": RDS,
        "xds.nonce": "1",
        "xds.version": "pilot-0/v1",
        "xds.ack": True,
    }
    assert ack.status.status_code is StatusCode.UNSET
    tracing.record_answer(conn, w, "1")  # answered once: a repeat records nothing more
    assert len([s for s in exporter.get_finished_spans() if s.name == "pilot.xds.ack"]) == 1

    exporter.clear()
    w.nonce_sent, w.version_sent = "2", "pilot-0/v2"
    tracing.remember_send(w, req, nonce_before="1")
    tracing.record_answer(conn, w, "2", error="route: unknown cluster")
    nack = span_named(exporter, "pilot.xds.ack")
    assert nack.status.status_code is StatusCode.ERROR
    assert nack.status.description == "route: unknown cluster"
    assert nack.attributes is not None and nack.attributes["xds.ack"] is False


def test_untraced_or_unsent_push_records_no_answer_span(exporter: InMemorySpanExporter) -> None:
    conn = connection()
    w = conn.watch(RDS)
    w.nonce_sent = "1"
    tracing.remember_send(w, PushRequest(full=True), nonce_before="")  # no trace to continue
    (parent,), _ = changes(1)
    tracing.remember_send(w, PushRequest(full=True, traces=(parent,)), nonce_before="1")  # nothing sent
    tracing.record_answer(conn, w, "1")
    assert not [s for s in exporter.get_finished_spans() if s.name == "pilot.xds.ack"]
