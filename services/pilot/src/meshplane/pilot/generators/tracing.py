"""Tracing on every HTTP connection manager, as Istio's configureTracingFromTelemetry.

Which tracer a listener gets (Istio's ``Telemetries.Tracing``): the Telemetry objects that apply
to the proxy (root namespace, proxy namespace, then selected; see :mod:`.accesslog`) have their
``tracing`` entries merged for the listener's mode, starting from the first of MeshConfig's
``defaultProviders.tracing``: ``providers`` replaces the provider (the first one named),
``randomSamplingPercentage``, ``disableSpanReporting``, ``enableIstioTags`` and
``useRequestIdForTraceSampling`` override when set, ``customTags`` replaces the whole map.

The provider must be a MeshConfig ``opentelemetry`` extension provider; it becomes Envoy's
``envoy.tracers.opentelemetry`` exporting over gRPC (or OTLP/HTTP) to the collector's outbound
cluster ``outbound|<port>||<service>``, which must be a service the proxy can reach (otherwise,
as in Istio, the listener gets no tracing and the reason is logged). Sampling: client and overall
100 %, random = ``randomSamplingPercentage``, else ``PILOT_TRACE_SAMPLING`` (Istio's default 1 %).
With no Telemetry tracing and no default provider nothing is traced: Istio's legacy path traces
to the bootstrap's ProxyConfig tracer, which meshplane's bootstrap does not have.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from envoy.config.core.v3 import base_pb2, grpc_service_pb2, http_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from envoy.extensions.tracers.opentelemetry.resource_detectors.v3 import (
    dynatrace_resource_detector_pb2,
    environment_resource_detector_pb2,
)
from envoy.type.tracing.v3 import custom_tag_pb2

from meshplane.pilot.generators.accesslog import applicable_telemetries, network_filters
from meshplane.pilot.generators.common import outbound, pack
from meshplane.pilot.generators.filters import HCM
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models.telemetry import CustomTag, Tracing, WorkloadMode
from meshplane.shared.meshtracing import OtelTracingProvider

log = logging.getLogger("meshplane.pilot.tracing")

OTEL_TRACER = "envoy.tracers.opentelemetry"
ENVIRONMENT_DETECTOR = "envoy.tracers.opentelemetry.resource_detectors.environment"
DYNATRACE_DETECTOR = "envoy.tracers.opentelemetry.resource_detectors.dynatrace"
T = TypeVar("T")
#: Istio's ``PILOT_TRACE_SAMPLING`` default (percent)
DEFAULT_SAMPLING = 1.0


@dataclass(frozen=True)
class TracingSpec:
    """The merged tracing of one proxy and mode (Istio's TracingConfig for a direction)."""

    provider: str = ""
    random_sampling: float | None = None
    disable_span_reporting: bool = False
    enable_istio_tags: bool = True
    use_request_id_for_trace_sampling: bool = True
    custom_tags: dict[str, CustomTag] = field(default_factory=dict)


def _matches(entry: Tracing, mode: WorkloadMode) -> bool:
    wanted = entry.match.mode if entry.match and entry.match.mode else WorkloadMode.CLIENT_AND_SERVER
    return wanted in (WorkloadMode.CLIENT_AND_SERVER, mode)


def merged_tracing(
    levels: Sequence[Sequence[Tracing]], defaults: Sequence[str], mode: WorkloadMode
) -> TracingSpec | None:
    """Istio's merge of the levels' tracing entries for ``mode``; None when no level has any and
    there is no default provider (the legacy MeshConfig path)."""
    entries = [e for level in levels for e in level if _matches(e, mode)]
    if not entries and not defaults:
        return None
    spec = TracingSpec(provider=defaults[0] if defaults else "")
    for e in entries:
        names = [p.name for p in e.providers or () if p.name]
        spec = TracingSpec(
            provider=names[0] if names else spec.provider,
            random_sampling=_first(e.random_sampling_percentage, spec.random_sampling),
            disable_span_reporting=_first(e.disable_span_reporting, spec.disable_span_reporting),
            enable_istio_tags=_first(e.enable_istio_tags, spec.enable_istio_tags),
            use_request_id_for_trace_sampling=_first(
                e.use_request_id_for_trace_sampling, spec.use_request_id_for_trace_sampling
            ),
            custom_tags=dict(e.custom_tags) if e.custom_tags is not None else spec.custom_tags,
        )
    return spec


def _first(given: T | None, inherited: T) -> T:
    return inherited if given is None else given


def tracing_for(ctx: PushContext, proxy: Proxy, mode: WorkloadMode) -> TracingSpec | None:
    levels = [t.spec.tracing or [] for t in applicable_telemetries(ctx, proxy)]
    return merged_tracing(levels, ctx.mesh.default_tracing_providers, mode)


# ---- translation to Envoy ---------------------------------------------------------------------
def hcm_tracing(
    ctx: PushContext, proxy: Proxy, spec: TracingSpec
) -> hcm.HttpConnectionManager.Tracing | None:
    """The HCM ``tracing`` block for ``spec``, or None (span reporting off, no usable provider)."""
    if spec.disable_span_reporting or not spec.provider:
        return None
    provider = ctx.mesh.tracing_provider(spec.provider)
    if provider is None:
        _warn_once(f"tracing provider {spec.provider!r} is not an opentelemetry provider of MeshConfig")
        return None
    svc = ctx.service(provider.hostname, proxy.namespace)
    if svc is None or not any(s is svc for s in ctx.services_for(proxy)):
        _warn_once(
            f"tracing provider {spec.provider!r}: service {provider.service} is not in the registry "
            f"(or not visible to {proxy.namespace}); no tracing"
        )
        return None
    cluster = outbound(provider.port, "", svc.hostname)
    out = hcm.HttpConnectionManager.Tracing()
    out.client_sampling.value = 100.0
    out.overall_sampling.value = 100.0
    pct = spec.random_sampling if spec.random_sampling is not None else default_sampling()
    out.random_sampling.value = pct
    out.max_path_tag_length.value = provider.max_tag_length
    out.provider.CopyFrom(
        http_tracer_pb2.Tracing.Http(
            name=OTEL_TRACER, typed_config=pack(otel_config(provider, cluster, svc.hostname, proxy))
        )
    )
    if proxy.type is ProxyType.ROUTER:
        out.spawn_upstream_span.value = True
    tags = istio_tags(ctx, proxy) if spec.enable_istio_tags else []
    out.custom_tags.extend(tags + [custom_tag(name, tag) for name, tag in sorted(spec.custom_tags.items())])
    return out


def otel_config(
    provider: OtelTracingProvider, cluster: str, authority: str, proxy: Proxy
) -> opentelemetry_pb2.OpenTelemetryConfig:
    cfg = opentelemetry_pb2.OpenTelemetryConfig(service_name=service_name(proxy))
    if provider.http_path is not None:
        svc = http_service_pb2.HttpService(
            http_uri=http_uri_pb2.HttpUri(
                uri=f"http://{authority}:{provider.port}{provider.http_path}", cluster=cluster
            )
        )
        svc.http_uri.timeout.FromMilliseconds(int(provider.http_timeout * 1000))
        for name, value in provider.http_headers:
            svc.request_headers_to_add.add().header.CopyFrom(base_pb2.HeaderValue(key=name, value=value))
        cfg.http_service.CopyFrom(svc)
    else:
        grpc = grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster, authority=authority)
        )
        if provider.grpc_timeout is not None:
            grpc.timeout.FromMilliseconds(int(provider.grpc_timeout * 1000))
        grpc.initial_metadata.extend(base_pb2.HeaderValue(key=k, value=v) for k, v in provider.grpc_metadata)
        cfg.grpc_service.CopyFrom(grpc)
    if provider.environment_detector:
        cfg.resource_detectors.add(
            name=ENVIRONMENT_DETECTOR,
            typed_config=pack(environment_resource_detector_pb2.EnvironmentResourceDetectorConfig()),
        )
    if provider.dynatrace_detector:
        cfg.resource_detectors.add(
            name=DYNATRACE_DETECTOR,
            typed_config=pack(dynatrace_resource_detector_pb2.DynatraceResourceDetectorConfig()),
        )
    return cfg


def service_name(proxy: Proxy) -> str:
    """Istio's default tracing service name (APP_LABEL_AND_NAMESPACE): ``<app>.<namespace>``,
    ``istio-proxy`` without an app label."""
    app = proxy.labels.get("app") or proxy.labels.get("app.kubernetes.io/name") or "istio-proxy"
    return f"{app}.{proxy.namespace}"


#: Istio's canonical service and revision: the first of these labels the workload has
CANONICAL_NAME_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")


def _first_label(proxy: Proxy, keys: tuple[str, ...], default: str) -> str:
    return next((proxy.labels[k] for k in keys if proxy.labels.get(k)), default)


def istio_tags(ctx: PushContext, proxy: Proxy) -> list[custom_tag_pb2.CustomTag]:
    """Istio's own span tags (``enableIstioTags``), from the proxy's labels and namespace."""
    canonical = _first_label(proxy, CANONICAL_NAME_LABELS, "istio-proxy")
    revision = _first_label(proxy, CANONICAL_REVISION_LABELS, "latest")
    values = (
        ("istio.canonical_revision", revision),
        ("istio.canonical_service", canonical),
        ("istio.mesh_id", ctx.mesh.trust_domain),
        ("istio.namespace", proxy.namespace),
    )
    return [
        custom_tag_pb2.CustomTag(tag=tag, literal=custom_tag_pb2.CustomTag.Literal(value=value))
        for tag, value in values
    ]


def custom_tag(name: str, tag: CustomTag) -> custom_tag_pb2.CustomTag:
    out = custom_tag_pb2.CustomTag(tag=name)
    if tag.literal is not None:
        out.literal.value = tag.literal.value or ""
    elif tag.environment is not None:
        out.environment.name = tag.environment.name or ""
        out.environment.default_value = tag.environment.default_value or ""
    elif tag.header is not None:
        out.request_header.name = tag.header.name or ""
        out.request_header.default_value = tag.header.default_value or ""
    elif tag.formatter is not None:
        out.value = tag.formatter.value or ""
    return out


@functools.cache
def default_sampling() -> float:
    """``PILOT_TRACE_SAMPLING`` (percent, Istio's default 1.0; outside 0..100 → 1.0, as Istio)."""
    raw = os.environ.get("PILOT_TRACE_SAMPLING", "")
    try:
        value = float(raw) if raw else DEFAULT_SAMPLING
    except ValueError:
        log.warning("PILOT_TRACE_SAMPLING=%r is not a number; using %s", raw, DEFAULT_SAMPLING)
        return DEFAULT_SAMPLING
    return value if 0.0 <= value <= 100.0 else DEFAULT_SAMPLING


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


# ---- applying to listeners --------------------------------------------------------------------
def apply_tracing(
    ctx: PushContext, proxy: Proxy, listeners: Iterable[listener_pb2.Listener], mode: WorkloadMode
) -> None:
    """Set ``tracing`` on every HCM of ``listeners`` (nothing to do without tracing config)."""
    spec = tracing_for(ctx, proxy, mode)
    tracing = hcm_tracing(ctx, proxy, spec) if spec is not None else None
    if tracing is None:
        return
    for flt in network_filters(listeners):
        if flt.name != HCM:
            continue
        msg = hcm.HttpConnectionManager()
        if not flt.typed_config.Unpack(msg):
            continue
        msg.tracing.CopyFrom(tracing)
        if spec is not None and not spec.use_request_id_for_trace_sampling:
            rid = uuid_pb2.UuidRequestIdConfig()
            rid.use_request_id_for_trace_sampling.value = False
            msg.request_id_extension.typed_config.CopyFrom(pack(rid))
        flt.typed_config.CopyFrom(pack(msg))
