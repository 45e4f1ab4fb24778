"""Checks Istio's webhook makes on every object before its kind's rules: names and annotations."""

from __future__ import annotations

from typing import Any

from meshplane.shared.config.checks.hosts import is_dns1123_label, is_dns1123_subdomain
from meshplane.shared.config.checks.labels import check_label_key, label_problems
from meshplane.shared.config.issues import Issues

ALWAYS_REJECT = "internal.istio.io/webhook-always-reject"
INTERNAL_PREFIX = "internal.istio.io/"
DRY_RUN = "istio.io/dry-run"
_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def _string_map(value: object, path: str, issues: Issues) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.error(path, "must be a map of strings")
        return {}
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(val, str):
            issues.error(f"{path}.{key}", "value must be a string")
            continue
        out[str(key)] = val
    return out


def check_metadata(
    kind: str, metadata: Any, spec: Any, issues: Issues
) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """Check ``metadata``; returns (name, namespace, labels, annotations) for the kind rules."""
    if metadata is None:
        issues.error("metadata", "required field is missing")
        return "", "", {}, {}
    if not isinstance(metadata, dict):
        issues.error("metadata", "must be a mapping")
        return "", "", {}, {}
    name = metadata.get("name")
    if name is None and metadata.get("generateName") is None:
        issues.error("metadata.name", "required field is missing")
        name = ""
    elif name is not None and not isinstance(name, str):
        issues.error("metadata.name", "must be a string")
        name = ""
    elif isinstance(name, str):
        if kind == "Gateway" and not is_dns1123_label(name):
            issues.error(
                "metadata.name", f"invalid gateway name {name!r}: must be a DNS-1123 label (no dots)"
            )
        elif not is_dns1123_subdomain(name):
            issues.error("metadata.name", f"invalid name {name!r}: must be a DNS-1123 subdomain")
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or not is_dns1123_label(namespace):
        issues.error("metadata.namespace", f"invalid namespace {namespace!r}: must be a DNS-1123 label")
        namespace = "default"
    labels = _string_map(metadata.get("labels"), "metadata.labels", issues)
    for key, problem in label_problems(labels):
        issues.error(f"metadata.labels.{key}", problem)
    annotations = _string_map(metadata.get("annotations"), "metadata.annotations", issues)
    _check_annotations(kind, annotations, spec, issues)
    return name or "", namespace, labels, annotations


def _check_annotations(kind: str, annotations: dict[str, str], spec: Any, issues: Issues) -> None:
    for key in annotations:
        path = f"metadata.annotations.{key}"
        problem = check_label_key(key)
        if problem:
            issues.error(path, problem.replace("label key", "annotation key"))
        if key == ALWAYS_REJECT:
            issues.error(path, "the webhook-always-reject annotation was found: object always rejected")
        elif key.startswith(INTERNAL_PREFIX):
            issues.error(path, f"internal annotation {key!r} may not be set by users")
    if DRY_RUN not in annotations:
        return
    path = f"metadata.annotations.{DRY_RUN}"
    if kind != "AuthorizationPolicy":
        issues.error(path, f"the {DRY_RUN} annotation is only supported on AuthorizationPolicy, not {kind}")
        return
    if annotations[DRY_RUN] not in _BOOLS:
        issues.error(path, f"invalid value {annotations[DRY_RUN]!r}: must be a boolean")
    action = spec.get("action", "ALLOW") if isinstance(spec, dict) else "ALLOW"
    if action not in ("ALLOW", "DENY"):
        issues.error(path, f"the {DRY_RUN} annotation is only supported with action ALLOW or DENY")
