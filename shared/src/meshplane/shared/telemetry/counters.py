"""Counters under Istio's exact names, and the ``/metrics`` text that keeps them.

prometheus_client follows the OpenMetrics rule that a counter's samples end in ``_total``; Istio's
control-plane counters do not (``pilot_xds_pushes``, ``pilot_total_xds_rejects``,
``galley_validation_passed``: OpenCensus, later OpenTelemetry's Prometheus exporter without
counter suffixes), and Istio's dashboards query those names. An :class:`IstioCounter` is a
prometheus_client ``Counter`` whose samples carry the declared name as is (no ``_total``, no
``_created``); :func:`exposition` writes the registry in Prometheus's text format with such a family
typed ``counter`` under that name. Counters whose Istio name does end in ``_total``
(``sidecar_injection_requests_total``) and meshplane's own counters stay plain ``Counter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import Counter, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


class IstioCounter(Counter):
    """A counter exposed as ``<name>`` (Istio's name), not ``<name>_total``."""

    def _child_samples(self) -> Iterable[Sample]:
        return (Sample("", {}, self._value.get(), None, None),)


def is_bare_counter(family: Metric) -> bool:
    """An :class:`IstioCounter`'s family: type counter, samples named as the family."""
    return family.type == "counter" and any(s.name == family.name for s in family.samples)


class _Untyped(Collector):
    """One counter family re-typed ``unknown`` so prometheus_client writes its samples unchanged."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        untyped = Metric(self.family.name, self.family.documentation, "unknown")
        untyped.samples = [s for s in self.family.samples if s.name == self.family.name]
        yield untyped


class _Only(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def exposition(registry: Collector) -> bytes:
    """Prometheus text (format 0.0.4) of ``registry``, :class:`IstioCounter` families under their
    own names and typed ``counter``."""
    out: list[bytes] = []
    pending: list[Metric] = []
    for family in registry.collect():
        if not is_bare_counter(family):
            pending.append(family)
            continue
        if pending:
            out.append(generate_latest(_Only(pending)))
            pending = []
        text = generate_latest(_Untyped(family))
        out.append(
            text.replace(
                f"# TYPE {family.name} untyped\n".encode(), f"# TYPE {family.name} counter\n".encode(), 1
            )
        )
    if pending:
        out.append(generate_latest(_Only(pending)))
    return b"".join(out)
