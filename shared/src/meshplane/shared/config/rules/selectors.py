"""Selector and targetRef rules shared by AuthorizationPolicy, RequestAuthentication, Telemetry."""

from __future__ import annotations

from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.base import PolicyTargetReference, WorkloadSelector
from meshplane.shared.config.rules.notapplied import NOT_APPLIED

TARGET_KINDS = {
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
}


def check_selector_labels(labels: dict[str, str] | None, path: str, issues: Issues) -> None:
    """Istio's workload selector rule: no empty key, no ``*``; no labels at all is only a warning."""
    for key, value in (labels or {}).items():
        lpath = f"{path}.{key}"
        if key == "":
            issues.error(lpath, f"empty key is not supported in selector: '{key}={value}'")
        if "*" in key or "*" in value:
            issues.error(lpath, f"wildcard is not supported in selector: '{key}={value}'")
    if not labels:
        issues.warn(path, "workload selector specified without labels; it applies to every workload in scope")


def check_selector(selector: WorkloadSelector | None, path: str, issues: Issues) -> None:
    if selector is not None:
        check_selector_labels(selector.match_labels, f"{path}.matchLabels", issues)


def check_targets(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: list[PolicyTargetReference] | None,
    issues: Issues,
) -> None:
    chosen = [
        n for n, v in (("selector", selector), ("targetRef", target_ref), ("targetRefs", target_refs)) if v
    ]
    if len(chosen) > 1:
        issues.error(
            "spec", f"only one of selector, targetRef or targetRefs may be set (found {', '.join(chosen)})"
        )
    check_selector(selector, "spec.selector", issues)
    if target_ref is not None:
        _check_ref(target_ref, "spec.targetRef", issues)
    for i, ref in enumerate(target_refs or []):
        _check_ref(ref, f"spec.targetRefs[{i}]", issues)


def warn_targets_not_applied(
    target_ref: PolicyTargetReference | None, target_refs: list[PolicyTargetReference] | None, issues: Issues
) -> None:
    """A security policy bound by ``targetRef(s)`` applies to no proxy meshplane serves."""
    for name, value in (("targetRef", target_ref), ("targetRefs", target_refs)):
        if value:
            issues.warn(
                f"spec.{name}",
                f"{NOT_APPLIED}: {name} (no Gateway API gateways or waypoints: "
                "the policy applies to no workload)",
            )


def _check_ref(ref: PolicyTargetReference, path: str, issues: Issues) -> None:
    if not ref.name:
        issues.error(f"{path}.name", "targetRef name is required")
    if ref.namespace:
        issues.error(f"{path}.namespace", "cross-namespace targetRef is not supported; remove namespace")
    if (ref.group or "", ref.kind or "") not in TARGET_KINDS:
        issues.error(
            f"{path}.kind",
            f"targetRef kind {ref.kind!r} (group {ref.group or ''!r}) must be Service, ServiceEntry, "
            "Gateway or GatewayClass",
        )
