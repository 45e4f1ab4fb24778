"""Trace spans for pushes: one ``pilot.push`` per debounced push, one ``pilot.xds.ack`` per answer.

``pilot.push`` continues the trace of the first bus change merged into the push request and
links the others. Each response sent by that push remembers the push span's context; when the
proxy answers that nonce, a ``pilot.xds.ack`` span (from the send until the answer) is recorded
under it, with an error status when the answer is a NACK.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.xds.connection import Connection, PushTrace, Watched
from meshplane.shared.telemetry.tracing import current_headers, record_span, start_span_from_headers

_tracer = trace.get_tracer("meshplane.pilot")


@contextmanager
def push_span(req: PushRequest, version: str) -> Iterator[PushRequest]:
    """Run a push inside ``pilot.push``; yields the request to queue, carrying this span's context."""
    attributes: dict[str, str | int | float | bool] = {
        "pilot.version": version,
        "pilot.full": req.full,
        "pilot.reason": ",".join(req.reason),
        "pilot.merged_traces": len(req.traces),
    }
    first = req.traces[0] if req.traces else None
    with start_span_from_headers(
        _tracer, "pilot.push", first, links_from=req.traces[1:], attributes=attributes
    ):
        yield dataclasses.replace(req, traces=(current_headers(),)) if req.traces else req


def remember_send(w: Watched, req: PushRequest, nonce_before: str) -> None:
    """After a push sent ``w``'s type: keep the push's context for the answer to that nonce."""
    if not req.traces or w.nonce_sent == nonce_before:
        return
    w.push_trace = PushTrace(w.nonce_sent, w.version_sent, time.time_ns(), req.traces)


def record_answer(conn: Connection, w: Watched, nonce: str, error: str = "") -> None:
    """The proxy answered ``nonce`` (ACK, or NACK when ``error``): record ``pilot.xds.ack``."""
    sent = w.push_trace
    if sent is None or sent.nonce != nonce:
        return
    w.push_trace = None
    attributes: dict[str, str | int | float | bool] = {
        "xds.proxy_id": conn.proxy.id,
        "xds.type_url": w.type_url,
        "xds.nonce": nonce,
        "xds.version": sent.version,
        "xds.ack": not error,
    }
    record_span(_tracer, "pilot.xds.ack", sent.traces, sent.sent_ns, attributes, error=error)
