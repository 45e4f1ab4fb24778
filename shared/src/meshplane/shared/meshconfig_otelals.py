"""MeshConfig's ``extensionProviders`` of type ``envoyOtelAls``: access logs sent over gRPC to an
OpenTelemetry collector.

Istio's ``EnvoyOpenTelemetryLogProvider``: ``service`` (a hostname in the registry, or
``namespace/hostname``), ``port``, ``logName`` (Envoy's ``log_name``; Istio's default
``otel_envoy_accesslog``) and ``logFormat`` (``text``: the log record's body, else Istio's default
text line; ``labels``: the record's attributes). Pilot turns one into Envoy's upstream
``envoy.access_loggers.open_telemetry`` whose gRPC service is the cluster
``outbound|<port>||<service>`` (``meshplane.pilot.generators.accesslog``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Istio's default ``logName``
DEFAULT_LOG_NAME = "otel_envoy_accesslog"


class OtelAlsError(ValueError):
    """A provider that cannot be used; the message names where."""


@dataclass(frozen=True, slots=True)
class OtelAlsProvider:
    service: str
    port: int
    log_name: str = DEFAULT_LOG_NAME
    #: ``logFormat.text`` (the body; None: Istio's default text line)
    text: str | None = None
    #: ``logFormat.labels`` (the attributes)
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def hostname(self) -> str:
        """The registry hostname (Istio accepts ``namespace/hostname`` too)."""
        return self.service.split("/", 1)[-1]


def parse_otel_als(body: Any, at: str) -> OtelAlsProvider:
    """Parse an ``envoyOtelAls`` provider body; raise OtelAlsError naming ``at``."""
    if not isinstance(body, dict):
        raise OtelAlsError(f"{at}: expected a mapping, got {type(body).__name__}")
    unknown = sorted(set(body) - {"service", "port", "logName", "logFormat"})
    if unknown:
        raise OtelAlsError(f"{at}: unknown field(s) {', '.join(unknown)}")
    service, port = body.get("service"), body.get("port")
    if not isinstance(service, str) or not service:
        raise OtelAlsError(f"{at}.service: expected a service hostname, got {service!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise OtelAlsError(f"{at}.port: expected a port number, got {port!r}")
    log_name = body.get("logName") or DEFAULT_LOG_NAME
    if not isinstance(log_name, str):
        raise OtelAlsError(f"{at}.logName: expected a string, got {log_name!r}")
    fmt = body.get("logFormat") or {}
    if not isinstance(fmt, dict) or set(fmt) - {"text", "labels"}:
        raise OtelAlsError(f"{at}.logFormat: expected text and/or labels, got {fmt!r}")
    text, labels = fmt.get("text"), fmt.get("labels") or {}
    if text is not None and not isinstance(text, str):
        raise OtelAlsError(f"{at}.logFormat.text: expected a string, got {text!r}")
    if not isinstance(labels, dict):
        raise OtelAlsError(f"{at}.logFormat.labels: expected a mapping, got {labels!r}")
    return OtelAlsProvider(service, port, log_name, text, tuple((str(k), str(v)) for k, v in labels.items()))
