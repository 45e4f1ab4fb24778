"""A real OTLP/gRPC receiver (metrics, traces and logs) for tests: what an OpenTelemetry Collector gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


class OtlpReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Listens on a free loopback port (``endpoint``) and keeps every export request it gets."""

    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.traces = _TraceReceiver()
        self.logs = _LogReceiver()
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self.traces, self._server)  # type: ignore[no-untyped-call]
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self.logs, self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def Export(  # noqa: N802 (the gRPC method name)
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        with self._lock:
            self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def latest(self, name: str, service: str = "") -> tuple[metrics_pb2.Metric, dict[str, str]] | None:
        """The most recently received metric called ``name`` and its resource attributes."""
        with self._lock:
            requests = list(self.requests)
        for request in reversed(requests):
            for rm in request.resource_metrics:
                resource = {a.key: a.value.string_value for a in rm.resource.attributes}
                if service and resource.get("service.name") != service:
                    continue
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            return metric, resource
        return None

    def wait_for(
        self,
        name: str,
        service: str = "",
        timeout: float = 30,
        until: Callable[[metrics_pb2.Metric], bool] = lambda _: True,
    ) -> tuple[metrics_pb2.Metric, dict[str, str]]:
        """The latest export of metric ``name`` (of ``service``) for which ``until`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.latest(name, service)
            if found is not None and until(found[0]):
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"no OTLP export of metric {name!r} within {timeout}s ({len(self.requests)} requests)"
        )


class _TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.span_names: list[tuple[str, str]] = []  # (service.name, span name)
        #: every span received, with its resource's service.name
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        #: the resource attributes of every export (merged; string values)
        self.resources: dict[str, str] = {}
        self._lock = threading.Lock()

    def Export(  # noqa: N802 (the gRPC method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for rs in request.resource_spans:
                service = next(
                    (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), ""
                )
                self.span_names.extend((service, s.name) for ss in rs.scope_spans for s in ss.spans)
                self.spans.extend((service, s) for ss in rs.scope_spans for s in ss.spans)
                self.resources.update({a.key: a.value.string_value for a in rs.resource.attributes})
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[tuple[str, trace_pb2.Span]]:
        """(service.name, span) of every span received so far."""
        with self._lock:
            return list(self.spans)


class _LogReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self) -> None:
        #: every log record received, with its scope's name
        self.records: list[tuple[str, logs_pb2.LogRecord]] = []
        self._lock = threading.Lock()

    def Export(  # noqa: N802 (the gRPC method name)
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: Any
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        with self._lock:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    self.records.extend((sl.scope.name, r) for r in sl.log_records)
        return logs_service_pb2.ExportLogsServiceResponse()

    def received(self) -> list[tuple[str, logs_pb2.LogRecord]]:
        """(scope name, record) of every log record received so far."""
        with self._lock:
            return list(self.records)


def span_attributes(span: trace_pb2.Span) -> dict[str, str]:
    """A span's attributes as strings (Envoy's tags are string attributes)."""
    return {a.key: a.value.string_value for a in span.attributes}
