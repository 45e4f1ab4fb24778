"""Galley's Prometheus metrics, on one registry served by both HTTP ports.

Names follow Istio's: Galley's ``galley_validation_*`` counters are exposed without ``_total``
(:class:`IstioCounter`), the injector's are Istio's ``sidecar_injection_*_total``; meshplane's own
counters (``galley_bus_writes``, ``galley_source_file_errors``, ...) keep Prometheus's ``_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry.counters import IstioCounter

REGISTRY = CollectorRegistry(auto_describe=True)

VALIDATION_PASSED = IstioCounter(
    "galley_validation_passed", "Admission requests allowed by the webhook.", registry=REGISTRY
)
VALIDATION_FAILED = IstioCounter(
    "galley_validation_failed",
    "Admission requests denied by the webhook, by reason.",
    ["reason"],
    registry=REGISTRY,
)
VALIDATION_HTTP_ERROR = IstioCounter(
    "galley_validation_http_error",
    "Webhook requests that could not be read as an AdmissionReview, by HTTP status.",
    ["status"],
    registry=REGISTRY,
)
SOURCE_FILE_ERRORS = Counter(
    "galley_source_file_errors",
    "Config files that failed to load or validate (each failed load counts once).",
    registry=REGISTRY,
)
SOURCE_FILES_INVALID = Gauge(
    "galley_source_files_invalid", "Config files currently in error.", registry=REGISTRY
)
SOURCE_CONFLICTS = Gauge(
    "galley_source_conflicts", "Objects defined in more than one file (first one kept).", registry=REGISTRY
)
BUS_PUBLISHED = Counter(
    "galley_bus_writes",
    "Puts and deletes written to the bus, by bucket and operation.",
    ["bucket", "op"],
    registry=REGISTRY,
)
BUS_RECONCILES = Counter(
    "galley_bus_reconciles", "Full reconciliations of the bus against the desired state.", registry=REGISTRY
)
ANALYSIS_MESSAGES = Gauge(
    "galley_analysis_messages", "Analyzer messages in the latest run, by level.", ["level"], registry=REGISTRY
)
TASK_FAILURES = TaskSupervisor.metric("galley", REGISTRY)

#: Reasons for ``galley_validation_failed`` (Istio's names).
REASON_UNKNOWN_TYPE = "unknown_type"
REASON_INVALID_RESOURCE = "invalid_resource"
REASON_DECODE_ERROR = "yaml_decode_error"

#: Istio's sidecar injector metrics (``pkg/kube/inject/monitoring.go``).
INJECTION_REQUESTS = Counter(
    "sidecar_injection_requests", "POST /inject requests with an AdmissionReview.", registry=REGISTRY
)
INJECTION_SUCCESS = Counter("sidecar_injection_success", "Pods injected.", registry=REGISTRY)
INJECTION_SKIP = Counter("sidecar_injection_skip", "Pods not selected.", registry=REGISTRY)
INJECTION_FAILURE = Counter(
    "sidecar_injection_failure", "Pods refused because they could not be injected.", registry=REGISTRY
)
