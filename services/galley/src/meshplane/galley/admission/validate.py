"""The webhook's decision for one object: pure, no I/O; the rules live in ``meshplane.shared.config``.

Istio's webhook behaviour on top of the shared rules: only CREATE and UPDATE are checked, a
top-level field other than apiVersion/kind/metadata/spec/status is denied as an unknown field,
a kind Istio does not know is denied as ``unrecognized type``, and a rule violation is denied
with ``configuration is invalid: ...``. Warnings go back to the caller either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshplane.galley import metrics
from meshplane.shared.config import ISTIO_GROUPS, lookup_kind, validate_object

VALIDATED_OPERATIONS = frozenset({"CREATE", "UPDATE"})
TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the webhook answers: allowed or not, why, and any warnings."""

    allowed: bool
    message: str = ""
    #: ``galley_validation_failed`` reason when denied.
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def _gvk(obj: dict[str, Any]) -> tuple[str, str, str]:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    api = api_version if isinstance(api_version, str) else ""
    group, _, version = api.rpartition("/")
    return group, version, kind if isinstance(kind, str) else ""


def review_object(operation: str, obj: dict[str, Any] | None) -> Verdict:
    """Decide on one admission request's object."""
    if operation not in VALIDATED_OPERATIONS:
        return Verdict(True)
    if obj is None:
        return Verdict(
            False, f"no object to validate in the {operation} request", metrics.REASON_DECODE_ERROR
        )
    unknown = sorted(k for k in obj if k not in TOP_LEVEL_FIELDS)
    if unknown:
        return Verdict(
            False, f"unknown field(s) at top level: {', '.join(unknown)}", metrics.REASON_INVALID_RESOURCE
        )
    group, version, kind = _gvk(obj)
    info = lookup_kind(group, kind)
    if info is None or info.group not in ISTIO_GROUPS:
        gvk = "/".join(p for p in (group, version, kind) if p) or "<no apiVersion/kind>"
        return Verdict(False, f"unrecognized type {gvk}", metrics.REASON_UNKNOWN_TYPE)
    result = validate_object(obj)
    warnings = [str(w) for w in result.warnings]
    if not result.valid:
        message = "configuration is invalid: " + "; ".join(str(e) for e in result.errors)
        return Verdict(False, message, metrics.REASON_INVALID_RESOURCE, warnings)
    return Verdict(True, warnings=warnings)
