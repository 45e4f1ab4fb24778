"""Telemetry (telemetry.istio.io): tracing, metrics and access logging per workload or namespace."""

from __future__ import annotations

from enum import StrEnum

from meshplane.shared.config.models.base import (
    Duration,
    IstioModel,
    PolicyTargetReference,
    WorkloadSelector,
)


class ProviderRef(IstioModel):
    name: str | None = None


class WorkloadMode(StrEnum):
    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"
    CLIENT = "CLIENT"
    SERVER = "SERVER"


class TracingSelector(IstioModel):
    mode: WorkloadMode | None = None


class Literal(IstioModel):
    value: str | None = None


class EnvironmentTag(IstioModel):
    name: str | None = None
    default_value: str | None = None


class RequestHeaderTag(IstioModel):
    name: str | None = None
    default_value: str | None = None


class FormatterTag(IstioModel):
    value: str | None = None


class CustomTag(IstioModel):
    literal: Literal | None = None
    environment: EnvironmentTag | None = None
    header: RequestHeaderTag | None = None
    formatter: FormatterTag | None = None


class Tracing(IstioModel):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    disable_context_propagation: bool | None = None
    use_request_id_for_trace_sampling: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    enable_istio_tags: bool | None = None


class TagOperation(StrEnum):
    UPSERT = "UPSERT"
    REMOVE = "REMOVE"


class TagOverride(IstioModel):
    operation: TagOperation | None = None
    value: str | None = None


class MetricSelector(IstioModel):
    metric: str | None = None
    custom_metric: str | None = None
    mode: WorkloadMode | None = None


class MetricsOverrides(IstioModel):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] | None = None


class Metrics(IstioModel):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reporting_interval: Duration | None = None


class AccessLogFilter(IstioModel):
    expression: str | None = None


class AccessLogging(IstioModel):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class Telemetry(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    tracing: list[Tracing] | None = None
    metrics: list[Metrics] | None = None
    access_logging: list[AccessLogging] | None = None
