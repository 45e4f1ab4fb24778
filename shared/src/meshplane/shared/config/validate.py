"""``validate_object``: Istio's admission checks for one whole object (the single implementation).

Used by ``meshctl validate``, Galley's webhook and Galley's directory source alike. Order, as in
Istio's webhook: the kind must be known, only the usual top-level fields may appear, metadata is
checked, the spec must fit the kind's schema, then the kind's own rules run.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from meshplane.shared.config.issues import Issues, ValidationResult
from meshplane.shared.config.kinds import ISTIO_GROUPS, lookup_kind, split_api_version
from meshplane.shared.config.parse import SPEC_MODELS, issues_from_validation_error
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.metadata import check_metadata
from meshplane.shared.config.rules.registry import RULES

TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def validate_object(obj: Any) -> ValidationResult:
    """Validate one full object (apiVersion, kind, metadata, spec); never raises on bad input."""
    issues = Issues()
    if not isinstance(obj, dict):
        issues.error("", f"object must be a mapping, not {type(obj).__name__}")
        return ValidationResult(issues.errors, issues.warnings, None)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version:
        issues.error("apiVersion", "required field is missing or not a string")
    if not isinstance(kind, str) or not kind:
        issues.error("kind", "required field is missing or not a string")
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
        return ValidationResult(issues.errors, issues.warnings, None)
    group, _version = split_api_version(api_version)
    if group not in ISTIO_GROUPS:
        return ValidationResult([], [], None)
    info = lookup_kind(group, kind)
    if info is None:
        issues.error("kind", f"unrecognized type {kind} ({api_version})")
        return ValidationResult(issues.errors, issues.warnings, None)
    for key in obj:
        if key not in TOP_LEVEL_FIELDS:
            issues.error(str(key), "unknown field")
    spec = obj.get("spec", {})
    if spec is None:
        spec = {}
    name, namespace, labels, annotations = check_metadata(kind, obj.get("metadata"), spec, issues)
    if not isinstance(spec, dict):
        issues.error("spec", f"must be a mapping, not {type(spec).__name__}")
        return ValidationResult(issues.errors, issues.warnings, info)
    model = _parse(kind, spec, issues)
    if model is not None:
        ctx = ObjectContext(kind, name, namespace, labels, annotations)
        rule = RULES.get(kind)
        if rule is not None:
            rule(model, ctx, issues)
    return ValidationResult(issues.errors, issues.warnings, info)


def _parse(kind: str, spec: dict[str, Any], issues: Issues) -> BaseModel | None:
    try:
        return SPEC_MODELS[kind].model_validate(spec)
    except ValidationError as exc:
        issues.errors.extend(issues_from_validation_error(exc))
        return None
