"""Istio's counter names on ``/metrics``: an IstioCounter is exposed without ``_total``, typed
counter; plain counters keep ``_total``; the text parses as Prometheus reads it."""

from __future__ import annotations

import prometheus_client as prom
from opentelemetry.sdk.metrics.export import Sum
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from meshplane.shared.health import metrics_response
from meshplane.shared.telemetry.counters import IstioCounter
from meshplane.shared.telemetry.metrics import registry_to_otel


def _registry() -> prom.CollectorRegistry:
    registry = prom.CollectorRegistry()
    pushes = IstioCounter("pilot_xds_pushes", "xDS pushes by type.", ["type"], registry=registry)
    pushes.labels("cds").inc(3)
    IstioCounter("galley_validation_passed", "Allowed.", registry=registry).inc()
    prom.Counter("sidecar_injection_requests_total", "Injector requests.", registry=registry).inc(2)
    prom.Gauge("pilot_xds", "Connected proxies.", registry=registry).set(7)
    return registry


def test_istio_counters_keep_istios_names_and_type() -> None:
    body, _ = metrics_response(_registry())
    text = body.decode()
    lines = text.splitlines()
    assert "# TYPE pilot_xds_pushes counter" in lines
    assert 'pilot_xds_pushes{type="cds"} 3.0' in lines
    assert "galley_validation_passed 1.0" in lines
    assert "pilot_xds_pushes_total" not in text and "pilot_xds_pushes_created" not in text
    # Istio's injector names do end in _total; a plain Counter keeps it
    assert "sidecar_injection_requests_total 2.0" in lines
    assert "pilot_xds 7.0" in lines
    # a Prometheus text parser reads them as counter families of those names
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pilot_xds_pushes"].type == "counter"
    assert [(s.labels, s.value) for s in families["pilot_xds_pushes"].samples] == [({"type": "cds"}, 3.0)]
    assert families["galley_validation_passed"].type == "counter"


def test_istio_counter_reaches_opentelemetry_as_a_monotonic_sum() -> None:
    data = registry_to_otel(_registry(), Resource.create({"service.name": "svc"}), start_ns=5)
    metrics = {m.name: m.data for m in data.resource_metrics[0].scope_metrics[0].metrics}
    pushes = metrics["pilot_xds_pushes"]
    assert isinstance(pushes, Sum) and pushes.is_monotonic
    assert [p.value for p in pushes.data_points] == [3.0]
