"""The node agent's Prometheus metrics (default registry), served on ``--monitoring-addr``."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY, Counter, Gauge

from meshplane.shared.tasks import TaskSupervisor

CERTIFICATES = Counter(
    "meshplane_nodeagent_certificates",
    "Workload certificates received from the CA, by kind (issued: first for a workload; renewed)",
    ["kind"],
)
CSR_FAILURES = Counter(
    "meshplane_nodeagent_csr_failures", "Certificate requests the CA did not answer with a cert"
)
ROOTS_REFUSED = Counter(
    "meshplane_nodeagent_trust_bundles_refused",
    "Trust bundles from the bus refused because a root is not signed by a trusted root's key",
)
SDS_STREAMS = Gauge("meshplane_nodeagent_sds_streams", "SDS streams (state of the world and delta) open now")
CERT_EXPIRY = Gauge(
    "meshplane_nodeagent_cert_expiry_seconds",
    "Seconds until the soonest-expiring current workload certificate expires (0 when there is none)",
)
TASK_FAILURES = TaskSupervisor.metric("meshplane_nodeagent", REGISTRY)

#: the current certificate's expiry per workload cache (keyed by the cache's id)
_expiries: dict[int, dt.datetime] = {}


def certificate_received(owner: int, not_after: dt.datetime) -> None:
    """Count a certificate for ``owner`` (issued the first time, renewed after) and track its expiry."""
    CERTIFICATES.labels("renewed" if owner in _expiries else "issued").inc()
    _expiries[owner] = not_after


def _seconds_to_expiry() -> float:
    if not _expiries:
        return 0.0
    return max(0.0, (min(_expiries.values()) - dt.datetime.now(dt.UTC)).total_seconds())


CERT_EXPIRY.set_function(_seconds_to_expiry)
