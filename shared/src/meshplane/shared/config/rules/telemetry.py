"""Istio's Telemetry rules: tracing, metrics overrides, access logging; and what meshplane accepts
but does not apply, warned as "accepted, not applied by meshplane: <field>".

Applied by Pilot: access logging (file providers), tracing (opentelemetry providers: sampling,
custom tags, span reporting, Istio tags, request-ID sampling), Istio's precedence. Not applied:
``targetRefs`` (no Gateway API gateways or waypoints), ``tracing.disableContextPropagation``
(upstream Envoy has no such switch) and ``metrics``: Istio's standard metrics come from
istio-proxy's ``istio.stats`` filter, which upstream Envoy lacks. Providers that MeshConfig does
not define as a type meshplane writes are named by Pilot and by ``meshctl analyze`` (IST0157),
which know the MeshConfig.
"""

from __future__ import annotations

from meshplane.shared.config.checks.cel import check_cel
from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.telemetry import ProviderRef, TagOperation, Telemetry
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.selectors import check_targets


def _check_providers(providers: list[ProviderRef] | None, path: str, issues: Issues) -> None:
    for i, provider in enumerate(providers or []):
        if not provider.name:
            issues.error(f"{path}[{i}].name", "provider name must not be empty")


METRICS_NOT_APPLIED = (
    f"{NOT_APPLIED}: metrics (Istio's standard metrics, istio_requests_total and the others, come from "
    "istio-proxy's istio.stats filter, which upstream Envoy lacks; Envoy's own stats are served on "
    "15090 /stats/prometheus)"
)


def warn_not_applied(tm: Telemetry, issues: Issues) -> None:
    if tm.target_refs or tm.target_ref:
        path = "spec.targetRefs" if tm.target_refs else "spec.targetRef"
        issues.warn(path, f"{NOT_APPLIED}: targetRefs (no Gateway API gateways or waypoints)")
    for i, tracing in enumerate(tm.tracing or []):
        if tracing.disable_context_propagation:
            issues.warn(
                f"spec.tracing[{i}].disableContextPropagation",
                f"{NOT_APPLIED}: disableContextPropagation (upstream Envoy has no such switch)",
            )
    if tm.metrics:
        issues.warn("spec.metrics", METRICS_NOT_APPLIED)


def check(tm: Telemetry, ctx: ObjectContext, issues: Issues) -> None:
    check_targets(tm.selector, tm.target_ref, tm.target_refs, issues)
    warn_not_applied(tm, issues)
    if len(tm.tracing or []) > 1:
        issues.warn("spec.tracing", "multiple tracing configs are not supported; only the first is used")
    for i, tracing in enumerate(tm.tracing or []):
        path = f"spec.tracing[{i}]"
        _check_providers(tracing.providers, f"{path}.providers", issues)
        if len(tracing.providers or []) > 1:
            issues.warn(f"{path}.providers", "multiple providers are not supported; only the first is used")
        pct = tracing.random_sampling_percentage
        if pct is not None and not 0 <= pct <= 100:
            issues.error(f"{path}.randomSamplingPercentage", f"{pct} must be in the range 0..100")
        for name, custom in (tracing.custom_tags or {}).items():
            tpath = f"{path}.customTags.{name}"
            if not name:
                issues.error(tpath, "tag name must not be empty")
            kinds = [
                k for k in ("literal", "environment", "header", "formatter") if getattr(custom, k) is not None
            ]
            if len(kinds) != 1:
                issues.error(tpath, "exactly one of literal, environment, header or formatter must be set")
            if custom.literal is not None and not custom.literal.value:
                issues.error(f"{tpath}.literal.value", "literal tag value must not be empty")
            if custom.environment is not None and not custom.environment.name:
                issues.error(f"{tpath}.environment.name", "environment tag name must not be empty")
            if custom.header is not None and not custom.header.name:
                issues.error(f"{tpath}.header.name", "header tag name must not be empty")
    for i, metrics in enumerate(tm.metrics or []):
        path = f"spec.metrics[{i}]"
        _check_providers(metrics.providers, f"{path}.providers", issues)
        if metrics.reporting_interval is not None and (problem := check_duration(metrics.reporting_interval)):
            issues.error(f"{path}.reportingInterval", problem)
        for j, override in enumerate(metrics.overrides or []):
            opath = f"{path}.overrides[{j}]"
            if override.match is not None and override.match.custom_metric == "":
                issues.error(f"{opath}.match.customMetric", "customMetric must not be empty")
            for tag, op in (override.tag_overrides or {}).items():
                tpath = f"{opath}.tagOverrides.{tag}"
                if not tag:
                    issues.warn(tpath, "tagOverrides name may not be empty")
                operation = op.operation or TagOperation.UPSERT
                if operation == TagOperation.UPSERT and not op.value:
                    issues.error(f"{tpath}.value", "UPSERT requires a value")
                if operation == TagOperation.REMOVE and op.value:
                    issues.error(f"{tpath}.value", "REMOVE must not have a value")
    for i, logging in enumerate(tm.access_logging or []):
        path = f"spec.accessLogging[{i}]"
        _check_providers(logging.providers, f"{path}.providers", issues)
        if logging.filter is not None and (problem := check_cel(logging.filter.expression or "")):
            issues.error(f"{path}.filter.expression", problem)
