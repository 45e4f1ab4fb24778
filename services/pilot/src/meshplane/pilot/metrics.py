"""Pilot's Prometheus metrics, with Istio's names and buckets (one registry per server).

Counters Istio has are IstioCounter counters, exposed without ``_total`` as Istio's are;
meshplane's own (``pilot_task_failures``, ``pilot_xds_stream_resets``) keep Prometheus's ``_total``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshplane.pilot.generators import envoyfilter
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry.counters import IstioCounter

W = TypeVar("W", Counter, Histogram)


class Children(dict[str, W]):
    """The children of a metric with one label, by label value, each looked up once:
    ``labels()`` checks its arguments and takes a lock on every call, and a push makes its calls
    per proxy and type."""

    def __init__(self, metric: W) -> None:
        super().__init__()
        self._metric: W = metric

    def __missing__(self, value: str) -> W:
        child: W = self._metric.labels(value)
        self[value] = child
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.xds = Gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", registry=r)
        self.pushes = IstioCounter(
            "pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", ["type"], registry=r
        )
        self.push_time = Histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            ["type"],
            buckets=(0.01, 0.1, 1, 3, 5, 10, 20, 30),
            registry=r,
        )
        #: ``pushes`` and ``push_time`` by type (``cds``, ...), for the push path
        self.pushes_of, self.push_time_of = Children(self.pushes), Children(self.push_time)
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration.",
            buckets=(0.1, 0.5, 1, 3, 5, 10, 20, 30),
            registry=r,
        )
        self.rejects = IstioCounter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ["type"],
            registry=r,
        )
        self.services = Gauge("pilot_services", "Total services known to pilot.", registry=r)
        self.inbound = IstioCounter(
            "pilot_inbound_updates", "Total number of updates received by pilot.", ["type"], registry=r
        )
        self.expired_nonce = IstioCounter(
            "pilot_xds_expired_nonce",
            "Total number of XDS requests with an expired nonce.",
            ["type"],
            registry=r,
        )
        self.debounce = Histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config entering debouncing and the merged push request "
            "entering the push queue.",
            registry=r,
        )
        # Istio counts a push whose context could not be built here; a meshplane push that raises
        # (building the context or queueing the proxies) is that failure.
        self.push_context_errors = IstioCounter(
            "pilot_xds_push_context_errors",
            "Number of errors (timeouts) initiating push context.",
            registry=r,
        )
        #: ``pilot_task_failures{task}``: supervised background tasks that raised
        self.task_failures = TaskSupervisor.metric("pilot", r)
        r.register(_EnvoyFilterStatus())


class _EnvoyFilterStatus(Collector):
    """Istio's ``pilot_envoy_filter_status{name,patch,result}`` (see
    :mod:`meshplane.pilot.generators.envoyfilter.status`; recorded by the patch stage, process-wide)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "pilot_envoy_filter_status",
            "Status of Envoy filters whether it was applied or errored.",
            labels=["name", "patch", "result"],
        )
        for name, patch, result, value in envoyfilter.STATUS.samples():
            family.add_metric([name, patch, result], value)
        yield family
