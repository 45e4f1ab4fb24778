"""Citadel's Prometheus metrics, under Istio's names (``citadel_server_*``, no ``_total`` suffix).

With ``--workers N`` every serving process bumps its own row of one shared table of counters
(a ``multiprocessing`` array made by the main process); the main process sums the rows on scrape.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTERS = {
    "csr": "CSRs received",
    "authentication_failure": "callers that failed authentication",
    "csr_parsing_err": "CSRs that could not be parsed",
    "csr_sign_err": "CSRs that could not be signed (TTL, CA errors)",
    "success_cert_issuance": "certificates issued",
    "token_review": "TokenReviews sent to the Kubernetes API server (meshplane's own)",
}
_INDEX = {label: i for i, label in enumerate(COUNTERS)}


def table_size(processes: int) -> int:
    """Length of a counter table shared by ``processes`` serving processes."""
    return processes * len(COUNTERS)


class CitadelMetrics(Collector):
    """Counters bumped by the servicer; the root expiry gauge read from the CA on scrape.

    ``table`` holds one row of counters per serving process; this process writes row ``row``
    only, and reads (``count``, ``collect``) sum all rows.
    """

    def __init__(self, table: MutableSequence[int] | None = None, row: int = 0) -> None:
        self._table: MutableSequence[int] = table if table is not None else [0] * len(COUNTERS)
        self._offset = row * len(COUNTERS)
        self._rows = len(self._table) // len(COUNTERS)
        self.root_expiry_timestamp = 0.0

    def inc(self, label: str) -> None:
        index = _INDEX.get(label)
        if index is None:
            raise KeyError(f"unknown citadel counter {label!r}")
        self._table[self._offset + index] += 1

    def count(self, label: str) -> int:
        """The counter summed over every serving process."""
        index = _INDEX[label]
        width = len(COUNTERS)
        return sum(self._table[row * width + index] for row in range(self._rows))

    def collect(self) -> Iterator[Metric]:
        for label, doc in COUNTERS.items():
            name = f"citadel_server_{label}_count"
            # a counter sample under the family name: exposed as Istio names it, typed counter
            # (meshplane.shared.telemetry.counters)
            metric = Metric(name, doc, "counter")
            metric.add_sample(name, {}, float(self.count(label)))
            yield metric
        yield GaugeMetricFamily(
            "citadel_server_root_cert_expiry_timestamp",
            "Unix time the current root certificate expires",
            value=self.root_expiry_timestamp,
        )
