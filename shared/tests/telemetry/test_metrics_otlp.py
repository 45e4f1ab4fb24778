"""prometheus_client registries exported through OpenTelemetry to a real OTLP/gRPC receiver."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client as prom
import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, Sum
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.telemetry.metrics import configure_metrics, registry_to_otel
from meshplane.shared.testing.otlp import OtlpReceiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


def sample_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    pushes = prom.Counter("pilot_xds_pushes", "xDS pushes by type.", ["type"], registry=registry)
    pushes.labels("cds").inc(3)
    pushes.labels("rds").inc()
    prom.Gauge("pilot_xds", "Connected proxies.", registry=registry).set(7)
    hist = prom.Histogram(
        "pilot_proxy_convergence_time", "Convergence.", buckets=(0.1, 1.0), registry=registry
    )
    for value in (0.05, 0.5, 0.7, 3.0):
        hist.observe(value)
    return registry


def test_registry_becomes_otel_sums_gauges_and_histograms() -> None:
    data = registry_to_otel(sample_registry(), Resource.create({"service.name": "svc"}), start_ns=5)
    metrics = {m.name: m for m in data.resource_metrics[0].scope_metrics[0].metrics}
    pushes, gauge, hist = (
        metrics[n].data for n in ("pilot_xds_pushes", "pilot_xds", "pilot_proxy_convergence_time")
    )
    assert isinstance(pushes, Sum) and isinstance(gauge, Gauge) and isinstance(hist, Histogram)
    assert pushes.is_monotonic and pushes.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert {dict(p.attributes or {})["type"]: p.value for p in pushes.data_points} == {"cds": 3.0, "rds": 1.0}
    assert [p.value for p in gauge.data_points] == [7.0]
    (point,) = hist.data_points
    assert point.explicit_bounds == [0.1, 1.0]
    assert list(point.bucket_counts) == [1, 2, 1]
    assert point.count == 4 and point.sum == pytest.approx(4.25)


def test_otlp_export_reaches_a_real_receiver(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    export = configure_metrics("meshplane-test", sample_registry(), instance="t-1")
    assert export is not None
    try:
        metric, resource = receiver.wait_for("pilot_xds_pushes", "meshplane-test")
    finally:
        export.shutdown()
    assert resource["service.instance.id"] == "t-1"
    assert metric.sum.is_monotonic
    values = {p.attributes[0].value.string_value: p.as_double for p in metric.sum.data_points}
    assert values == {"cds": 3.0, "rds": 1.0}
    hist, _ = receiver.wait_for("pilot_proxy_convergence_time", "meshplane-test")
    (point,) = hist.histogram.data_points
    assert (list(point.bucket_counts), list(point.explicit_bounds), point.count) == ([1, 2, 1], [0.1, 1.0], 4)
    assert not point.HasField("min")  # Prometheus keeps no min/max: left unset, not zero


def test_nothing_exported_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    assert configure_metrics("svc", sample_registry()) is None
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert configure_metrics("svc", sample_registry()) is None


def test_galley_process_exports_its_metrics_over_otlp(
    receiver: OtlpReceiver, nats_server: NatsServer, tmp_path: Path
) -> None:
    """A real ``meshplane-galley`` exports its galley_* registry when OTEL_METRICS_EXPORTER=otlp."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "broken.yaml").write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\n: [\n")
    env = dict(
        os.environ,
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="200",
    )
    args = [str(Path(sys.executable).parent / "meshplane-galley"), "--nats-url", nats_server.url]
    args += ["--config-dir", str(config), "--webhook-addr", f"127.0.0.1:{free_port()}"]
    args += ["--monitoring-addr", f"127.0.0.1:{free_port()}"]
    galley = ChildProcess(args, tmp_path / "galley.log", env=env, inherit_env=False)
    galley.start()
    try:
        # the gauge is exported from Galley's start; wait for the export after it read the file
        def counted(m: Any) -> bool:
            return [p.as_double for p in m.gauge.data_points] == [1.0]

        metric, resource = receiver.wait_for("galley_source_files_invalid", "meshplane-galley", until=counted)
    finally:
        galley.stop(timeout=10)
    assert [p.as_double for p in metric.gauge.data_points] == [1.0]  # the broken file, as on /metrics
    assert resource["service.name"] == "meshplane-galley"
