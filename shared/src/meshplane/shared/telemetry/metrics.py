"""Metrics through OpenTelemetry: each service's prometheus_client registry, exported over OTLP.

The services keep their prometheus_client instruments and their ``/metrics`` endpoints (names
and labels are Istio's, and Prometheus scrapes them as before). This module bridges the same
registry into OpenTelemetry: a background thread reads the registry, turns each family into the
OpenTelemetry data model (counter → monotonic cumulative Sum, gauge → Gauge, histogram →
explicit-bucket Histogram, summary → ``_sum``/``_count`` Sums) and hands it to the OTel SDK's
exporters. Which exporters, where and how often follow the standard variables:
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``; a comma list), the
``OTEL_EXPORTER_OTLP_*`` / ``OTEL_EXPORTER_OTLP_METRICS_*`` endpoint settings and
``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, default 60000). Nothing runs when unset.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

log = logging.getLogger("meshplane.telemetry.metrics")

_SCOPE = InstrumentationScope("meshplane.prometheus_bridge")
_CUMULATIVE = AggregationTemporality.CUMULATIVE


def registry_to_otel(
    registry: Collector, resource: Resource, start_ns: int, now_ns: int | None = None
) -> MetricsData:
    """Read ``registry`` once and return its families as OpenTelemetry metrics."""
    now_ns = now_ns or time.time_ns()
    metrics: list[Metric] = []
    for family in registry.collect():
        metrics.extend(
            _convert(
                family.name, family.type, family.documentation, family.unit, family.samples, start_ns, now_ns
            )
        )
    scope = ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url="")
    return MetricsData(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url="")]
    )


def _convert(
    name: str, kind: str, doc: str, unit: str, samples: Sequence[Sample], start_ns: int, now_ns: int
) -> list[Metric]:
    def points(suffix: str) -> list[NumberDataPoint]:
        created = {_key(s.labels): s.value for s in samples if s.name == name + "_created"}
        return [
            NumberDataPoint(
                attributes=dict(s.labels),
                start_time_unix_nano=int(created[_key(s.labels)] * 1e9)
                if _key(s.labels) in created
                else start_ns,
                time_unix_nano=now_ns,
                value=s.value,
            )
            for s in samples
            if s.name == name + suffix
        ]

    if kind == "counter":
        # ``<name>_total`` samples, or ``<name>`` ones for an IstioCounter
        totals = points("_total") or points("")
        return [Metric(name, doc, unit, Sum(totals, _CUMULATIVE, is_monotonic=True))]
    if kind == "histogram":
        return [
            Metric(
                name, doc, unit, Histogram(_histogram_points(name, samples, start_ns, now_ns), _CUMULATIVE)
            )
        ]
    if kind == "summary":
        return [
            Metric(name + "_sum", doc, unit, Sum(points("_sum"), _CUMULATIVE, is_monotonic=True)),
            Metric(name + "_count", doc, unit, Sum(points("_count"), _CUMULATIVE, is_monotonic=True)),
        ]
    gauges = [p for p in points("") if not math.isnan(p.value)]
    if kind == "info":
        gauges = points("_info")
    return [Metric(name, doc, unit, Gauge(gauges))] if gauges else []


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _histogram_points(
    name: str, samples: Iterable[Sample], start_ns: int, now_ns: int
) -> list[HistogramDataPoint]:
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    created: dict[tuple[tuple[str, str], ...], float] = {}
    for s in samples:
        key = _key(s.labels)
        if s.name == name + "_bucket":
            buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        elif s.name == name + "_sum":
            sums[key] = s.value
        elif s.name == name + "_count":
            counts[key] = s.value
        elif s.name == name + "_created":
            created[key] = s.value
    out = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        bounds = [le for le, _ in cumulative if not math.isinf(le)]
        per_bucket, previous = [], 0.0
        for _, total in cumulative:
            per_bucket.append(int(total - previous))
            previous = total
        out.append(
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=int(created[key] * 1e9) if key in created else start_ns,
                time_unix_nano=now_ns,
                count=int(counts.get(key, previous)),
                sum=sums.get(key, 0.0),
                bucket_counts=per_bucket,
                explicit_bounds=bounds,
                # Prometheus histograms keep no min/max; None leaves the optional OTLP fields unset.
                min=None,  # type: ignore[arg-type]
                max=None,  # type: ignore[arg-type]
            )
        )
    return out


class MetricsExport:
    """A daemon thread exporting the registry every interval, plus once more at :meth:`shutdown`."""

    def __init__(
        self, registry: Collector, resource: Resource, exporters: Sequence[MetricExporter], interval: float
    ) -> None:
        self.registry = registry
        self.resource = resource
        self.exporters = list(exporters)
        self.interval = interval
        self._start_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-metrics-export", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def export_once(self) -> None:
        data = registry_to_otel(self.registry, self.resource, self._start_ns)
        for exporter in self.exporters:
            try:
                exporter.export(data, timeout_millis=10_000)
            except Exception as exc:  # an exporter failing must never take the service down
                log.warning("metrics export via %s failed: %r", type(exporter).__name__, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export_once()

    def shutdown(self) -> None:
        """Export a last time and stop (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self.export_once()
        for exporter in self.exporters:
            exporter.shutdown()


def configure_metrics(service_name: str, registry: Collector, instance: str = "") -> MetricsExport | None:
    """Start exporting ``registry`` through OpenTelemetry when ``OTEL_METRICS_EXPORTER`` asks for it."""
    names = [n.strip() for n in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",") if n.strip()]
    exporters: list[MetricExporter] = []
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            exporters.append(OTLPMetricExporter())
        elif name == "console":
            exporters.append(ConsoleMetricExporter())
        elif name != "none":
            log.warning(
                "OTEL_METRICS_EXPORTER: unknown exporter %r ignored (use otlp, console or none)", name
            )
    if not exporters:
        return None
    attrs = {"service.name": service_name}
    if instance:
        attrs["service.instance.id"] = instance
    try:
        interval = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")) / 1000
    except ValueError:
        log.warning("OTEL_METRIC_EXPORT_INTERVAL is not a number of milliseconds; using 60000")
        interval = 60.0
    export = MetricsExport(registry, Resource.create(attrs), exporters, max(interval, 0.1))
    export.start()
    atexit.register(export.shutdown)
    return export
