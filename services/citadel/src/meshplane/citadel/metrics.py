"""Citadel's Prometheus metrics, under Istio's names (``citadel_server_*``, no ``_total`` suffix)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTERS = {
    "csr": "CSRs received",
    "authentication_failure": "callers that failed authentication",
    "csr_parsing_err": "CSRs that could not be parsed",
    "csr_sign_err": "CSRs that could not be signed (TTL, CA errors)",
    "success_cert_issuance": "certificates issued",
}


class CitadelMetrics(Collector):
    """Counters bumped by the servicer; the root expiry gauge read from the CA on scrape."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.root_expiry_timestamp = 0.0

    def inc(self, label: str) -> None:
        if label not in COUNTERS:
            raise KeyError(f"unknown citadel counter {label!r}")
        self.counts[label] += 1

    def collect(self) -> Iterator[Metric]:
        for label, doc in COUNTERS.items():
            name = f"citadel_server_{label}_count"
            metric = Metric(name, doc, "unknown")  # "counter" would force a _total suffix
            metric.add_sample(name, {}, float(self.counts[label]))
            yield metric
        yield GaugeMetricFamily(
            "citadel_server_root_cert_expiry_timestamp",
            "Unix time the current root certificate expires",
            value=self.root_expiry_timestamp,
        )
