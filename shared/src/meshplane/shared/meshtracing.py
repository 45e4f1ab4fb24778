"""MeshConfig's tracing providers: ``extensionProviders`` of type ``opentelemetry``.

Istio's ``opentelemetry`` provider (``MeshConfig.ExtensionProvider.OpenTelemetryTracingProvider``):
``service`` (a hostname in the registry, or ``namespace/hostname``), ``port``, ``maxTagLength``
(default 256), the exporter (``grpc{timeout, initialMetadata}``, or ``http{path, timeout (3 s),
headers}``; gRPC when ``http`` is absent) and ``resourceDetectors{environment, dynatrace}``.
Pilot turns one into Envoy's ``envoy.tracers.opentelemetry`` on the HTTP connection managers
(``meshplane.pilot.generators.tracing``). What Envoy cannot be given from here (Istio's
Dynatrace sampler, ``serviceAttributeEnrichment: OTEL_SEMANTIC_CONVENTIONS``) is kept in
``not_applied`` and named in MeshConfig's warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from meshplane.shared.durations import parse_duration

#: Istio's default ``maxTagLength`` (also Envoy's ``max_path_tag_length`` default)
DEFAULT_MAX_TAG_LENGTH = 256
#: Istio's default ``http.timeout``
DEFAULT_HTTP_TIMEOUT = 3.0


class TracingProviderError(ValueError):
    """A provider that cannot be used; the message names where."""


@dataclass(frozen=True, slots=True)
class OtelTracingProvider:
    """An ``opentelemetry`` extension provider, as Envoy's OpenTelemetry tracer needs it."""

    service: str
    port: int
    max_tag_length: int = DEFAULT_MAX_TAG_LENGTH
    #: gRPC exporter: ``grpc.timeout`` in seconds (None: Envoy's default) and ``initialMetadata``
    grpc_timeout: float | None = None
    grpc_metadata: tuple[tuple[str, str], ...] = ()
    #: HTTP exporter (``http`` given): the path, timeout and headers; None = gRPC
    http_path: str | None = None
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    http_headers: tuple[tuple[str, str], ...] = ()
    #: ``resourceDetectors``: Envoy's environment (OTEL_RESOURCE_ATTRIBUTES) and Dynatrace ones
    environment_detector: bool = False
    dynatrace_detector: bool = False
    #: fields given that Envoy's tracer is not configured from
    not_applied: tuple[str, ...] = ()

    @property
    def hostname(self) -> str:
        """The registry hostname (Istio accepts ``namespace/hostname`` too)."""
        return self.service.split("/", 1)[-1]


def parse_otel_provider(body: Any, at: str) -> OtelTracingProvider:
    """Parse an ``opentelemetry`` provider body; raise TracingProviderError naming ``at``."""
    if not isinstance(body, dict):
        raise TracingProviderError(f"{at}: expected a mapping, got {type(body).__name__}")
    service, port = body.get("service"), body.get("port")
    if not isinstance(service, str) or not service:
        raise TracingProviderError(f"{at}.service: expected the collector's hostname, got {service!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise TracingProviderError(f"{at}.port: expected a port number, got {port!r}")
    max_tag = body.get("maxTagLength", DEFAULT_MAX_TAG_LENGTH) or DEFAULT_MAX_TAG_LENGTH
    if isinstance(max_tag, bool) or not isinstance(max_tag, int) or max_tag < 0:
        raise TracingProviderError(f"{at}.maxTagLength: expected a number, got {max_tag!r}")
    not_applied = [f"opentelemetry.{key}" for key in ("dynatraceSampler",) if body.get(key) is not None]
    if body.get("serviceAttributeEnrichment") not in (None, "ISTIO_CANONICAL"):
        not_applied.append("opentelemetry.serviceAttributeEnrichment")
    known = {
        "service", "port", "maxTagLength", "grpc", "http", "resourceDetectors",
        "dynatraceSampler", "serviceAttributeEnrichment",
    }  # fmt: skip
    unknown = sorted(str(k) for k in body if k not in known)
    if unknown:
        raise TracingProviderError(f"{at}: unknown field(s) {', '.join(unknown)}")
    detectors = _mapping(body.get("resourceDetectors"), f"{at}.resourceDetectors")
    provider = OtelTracingProvider(
        service,
        port,
        max_tag,
        environment_detector="environment" in detectors,
        dynatrace_detector="dynatrace" in detectors,
        not_applied=tuple(not_applied),
    )
    if body.get("http") is not None:
        http = _mapping(body["http"], f"{at}.http")
        path = http.get("path") or "/v1/traces"
        if not isinstance(path, str):
            raise TracingProviderError(f"{at}.http.path: expected a string, got {path!r}")
        return replace(
            provider,
            http_path=path if path.startswith("/") else "/" + path,
            http_timeout=_seconds(http.get("timeout"), f"{at}.http.timeout", DEFAULT_HTTP_TIMEOUT),
            http_headers=_headers(http.get("headers"), f"{at}.http.headers"),
        )
    grpc = _mapping(body.get("grpc"), f"{at}.grpc")
    timeout = grpc.get("timeout")
    return replace(
        provider,
        grpc_timeout=None if timeout is None else _seconds(timeout, f"{at}.grpc.timeout", 0.0),
        grpc_metadata=_headers(grpc.get("initialMetadata"), f"{at}.grpc.initialMetadata"),
    )


def _mapping(raw: Any, at: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TracingProviderError(f"{at}: expected a mapping, got {type(raw).__name__}")
    return raw


def _seconds(raw: Any, at: str, default: float) -> float:
    if raw is None:
        return default
    try:
        return parse_duration(str(raw), signed=False).total_seconds()
    except ValueError as exc:
        raise TracingProviderError(f"{at}: {exc}") from None


def _headers(raw: Any, at: str) -> tuple[tuple[str, str], ...]:
    """``[{name, value | envName}]`` pairs; as in Istio, ``envName`` is read from the control
    plane's environment (Pilot's)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TracingProviderError(f"{at}: expected a list of {{name, value}}, got {type(raw).__name__}")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise TracingProviderError(f"{at}[{i}]: expected a mapping with a name")
        value = entry.get("value")
        env = entry.get("envName")
        if isinstance(env, str) and env and value is None:
            value = os.environ.get(env, "")
        if not isinstance(value, str):
            raise TracingProviderError(f"{at}[{i}] ({entry['name']}): expected a string value or envName")
        out.append((entry["name"], value))
    return tuple(out)
