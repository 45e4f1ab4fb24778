"""Istio's AuthorizationPolicy rules (HEAD): targets, actions, sources, operations, conditions."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import check_ip_or_cidr
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.security import Action, AuthorizationPolicy, Condition, Operation, Source
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.selectors import check_targets

_EXACT_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_BRACKET_KEYS = ("request.headers[", "request.auth.claims[")
_SOURCE_IDENTITY = (
    "principals",
    "not_principals",
    "namespaces",
    "not_namespaces",
    "service_accounts",
    "not_service_accounts",
    "request_principals",
    "not_request_principals",
)


def _alias(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(p.capitalize() for p in rest)


def check(ap: AuthorizationPolicy, ctx: ObjectContext, issues: Issues) -> None:
    check_targets(ap.selector, ap.target_ref, ap.target_refs, issues)
    action = ap.action or Action.ALLOW
    if action in (Action.DENY, Action.CUSTOM) and ap.rules is None:
        issues.error(
            "spec.rules", f"{action} policy must have rules; use 'rules: [{{}}]' to match all requests"
        )
    if action == Action.CUSTOM:
        if ap.provider is None or not ap.provider.name:
            issues.error("spec.provider.name", "CUSTOM action requires a provider name")
    elif ap.provider is not None:
        issues.error("spec.provider", "provider may only be used with action CUSTOM")
    for i, rule in enumerate(ap.rules or []):
        path = f"spec.rules[{i}]"
        if rule.from_ is not None and not rule.from_:
            issues.error(f"{path}.from", "from must not be empty when present")
        if rule.to is not None and not rule.to:
            issues.error(f"{path}.to", "to must not be empty when present")
        for j, rf in enumerate(rule.from_ or []):
            _check_source(rf.source, f"{path}.from[{j}].source", issues, custom=action == Action.CUSTOM)
        for j, rt in enumerate(rule.to or []):
            _check_operation(rt.operation, f"{path}.to[{j}].operation", issues)
        for j, cond in enumerate(rule.when or []):
            _check_condition(cond, f"{path}.when[{j}]", issues, custom=action == Action.CUSTOM)
        if action == Action.DENY and _http_only(rule):
            issues.warn(path, "DENY rule uses only HTTP attributes; it will deny all TCP traffic in scope")


def _http_only(rule: object) -> bool:
    ops = [rt.operation for rt in getattr(rule, "to", None) or [] if rt.operation is not None]
    uses_http = any(op.methods or op.paths or op.hosts or op.not_methods or op.not_paths for op in ops)
    return uses_http and not getattr(rule, "from_", None) and not getattr(rule, "when", None)


def _check_values(values: list[str] | None, path: str, issues: Issues) -> None:
    for i, value in enumerate(values or []):
        if value == "":
            issues.error(f"{path}[{i}]", "empty value is not allowed")


def _check_source(source: Source | None, path: str, issues: Issues, *, custom: bool) -> None:
    if source is None or not source.model_dump(exclude_none=True):
        issues.error(path, "source must have at least one field")
        return
    for field in type(source).model_fields:
        _check_values(getattr(source, field), f"{path}.{_alias(field)}", issues)
    for field in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
        for i, block in enumerate(getattr(source, field) or []):
            if block and (problem := check_ip_or_cidr(block)):
                issues.error(f"{path}.{_alias(field)}[{i}]", problem)
    has_sa = bool(source.service_accounts or source.not_service_accounts)
    if has_sa and (source.principals or source.not_principals or source.namespaces or source.not_namespaces):
        issues.error(path, "serviceAccounts cannot be combined with principals or namespaces")
    if custom:
        for field in _SOURCE_IDENTITY:
            if getattr(source, field):
                issues.error(f"{path}.{_alias(field)}", "CUSTOM action does not support identity fields")


def _check_operation(op: Operation | None, path: str, issues: Issues) -> None:
    if op is None or not op.model_dump(exclude_none=True):
        issues.error(path, "operation must have at least one field")
        return
    for field in type(op).model_fields:
        _check_values(getattr(op, field), f"{path}.{_alias(field)}", issues)
    for field in ("ports", "not_ports"):
        for i, port in enumerate(getattr(op, field) or []):
            if port and (not port.isdigit() or check_port(int(port))):
                issues.error(f"{path}.{_alias(field)}[{i}]", f"invalid port {port!r}: must be 1..65535")
    for field in ("paths", "not_paths"):
        for i, p in enumerate(getattr(op, field) or []):
            if problem := _path_template_problem(p):
                issues.error(f"{path}.{_alias(field)}[{i}]", problem)


def _path_template_problem(path: str) -> str | None:
    if "{" not in path and "}" not in path:
        return None
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if "{" not in segment and "}" not in segment:
            continue
        if segment not in ("{*}", "{**}"):
            return f"invalid path template {path!r}: a segment may only be {{*}} or {{**}}"
        if segment == "{**}" and i != len(segments) - 1:
            return f"invalid path template {path!r}: {{**}} must be the last segment"
    return None


def _check_condition(cond: Condition, path: str, issues: Issues, *, custom: bool) -> None:
    key = cond.key or ""
    if not key:
        issues.error(f"{path}.key", "condition key is required")
    elif key not in _EXACT_KEYS and not (
        any(key.startswith(p) and key.endswith("]") and len(key) > len(p) + 1 for p in _BRACKET_KEYS)
        or key.startswith("experimental.envoy.filters.")
    ):
        issues.error(f"{path}.key", f"unknown attribute {key!r}")
    if not cond.values and not cond.not_values:
        issues.error(path, "condition must have values or notValues")
    _check_values(cond.values, f"{path}.values", issues)
    _check_values(cond.not_values, f"{path}.notValues", issues)
    if custom and (key.startswith("source.") or key.startswith("request.auth.")):
        issues.error(f"{path}.key", f"CUSTOM action does not support condition {key!r}")
    for field, values in (("values", cond.values), ("notValues", cond.not_values)):
        for i, value in enumerate(values or []):
            if not value:
                continue
            if key in ("source.ip", "remote.ip", "destination.ip") and (problem := check_ip_or_cidr(value)):
                issues.error(f"{path}.{field}[{i}]", problem)
            if key == "destination.port" and (not value.isdigit() or check_port(int(value))):
                issues.error(f"{path}.{field}[{i}]", f"invalid port {value!r}: must be 1..65535")
