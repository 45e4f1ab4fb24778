"""Istio's AuthorizationPolicy rules (HEAD): targets, actions, sources, operations, conditions."""

from __future__ import annotations

import re

from meshplane.shared.config.checks.hosts import check_ip_or_cidr
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.security import (
    Action,
    AuthorizationPolicy,
    Condition,
    Operation,
    Rule,
    Source,
)
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.selectors import check_targets, warn_targets_not_applied

_PLAIN_KEYS = frozenset(
    {
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    }
)
_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
_MAP_KEY_PREFIXES = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")
_REPLACED_KEYS = {
    "destination.namespace": "attribute destination.namespace is replaced by the metadata.namespace",
    "destination.name": "deprecated attribute destination.name: only supported in v1alpha1",
    "destination.user": "deprecated attribute destination.user: only supported in v1alpha1",
}
#: Source fields that name an identity; CUSTOM rules may not use them.
_IDENTITY_FIELDS = (
    "principals",
    "not_principals",
    "namespaces",
    "not_namespaces",
    "service_accounts",
    "not_service_accounts",
    "request_principals",
    "not_request_principals",
)
_UNSUPPORTED_TEMPLATE = re.compile(r"/\{\w+=\*\*?\}|\{\w*\}|/\*\*?|\*\*?/")


def _alias(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(p.capitalize() for p in rest)


def check(ap: AuthorizationPolicy, ctx: ObjectContext, issues: Issues) -> None:
    check_targets(ap.selector, ap.target_ref, ap.target_refs, issues)
    warn_targets_not_applied(ap.target_ref, ap.target_refs, issues)
    action = ap.action or Action.ALLOW
    custom = action == Action.CUSTOM
    if action in (Action.DENY, Action.CUSTOM) and ap.rules is None:
        issues.error(
            "spec.rules",
            f"{action} action without rules is meaningless as it will never be triggered; "
            "add an empty rule '{}' to trigger it for every request",
        )
    if custom and ap.rules is not None and (ap.provider is None or not ap.provider.name):
        issues.error("spec.provider.name", "provider.name must not be empty for action CUSTOM")
    if not custom and ap.provider is not None:
        issues.error("spec.provider", f"provider must not be set with non CUSTOM action, found {action}")
    for i, rule in enumerate(ap.rules or []):
        _check_rule(rule, f"spec.rules[{i}]", issues, custom=custom, deny=action == Action.DENY)


def _check_rule(rule: Rule, path: str, issues: Issues, *, custom: bool, deny: bool) -> None:
    if rule.from_ is not None and not rule.from_:
        issues.error(f"{path}.from", "from must not be empty when present")
    if rule.to is not None and not rule.to:
        issues.error(f"{path}.to", "to must not be empty when present")
    tcp_in_from = tcp_in_to = False
    for j, rf in enumerate(rule.from_ or []):
        spath = f"{path}.from[{j}].source"
        if rf.source is None:
            issues.error(spath, "from.source must not be nil")
            continue
        _check_source(rf.source, spath, issues, custom=custom)
        src = rf.source
        tcp_in_from = tcp_in_from or any(
            getattr(src, f) is not None
            for f in (
                "principals",
                "not_principals",
                "namespaces",
                "not_namespaces",
                "ip_blocks",
                "not_ip_blocks",
                "remote_ip_blocks",
                "not_remote_ip_blocks",
            )
        )
    for j, rt in enumerate(rule.to or []):
        opath = f"{path}.to[{j}].operation"
        if rt.operation is None:
            issues.error(opath, "to.operation must not be nil")
            continue
        _check_operation(rt.operation, opath, issues)
        tcp_in_to = tcp_in_to or rt.operation.ports is not None or rt.operation.not_ports is not None
    for j, cond in enumerate(rule.when or []):
        _check_condition(cond, f"{path}.when[{j}]", issues, custom=custom)
    has_from = any(rf.source is not None for rf in rule.from_ or [])
    has_to = any(rt.operation is not None for rt in rule.to or [])
    if deny and ((has_from and not has_to and not tcp_in_from) or (has_to and not tcp_in_to)):
        issues.warn(
            path,
            "this DENY rule uses only HTTP attributes, so it will deny all traffic to TCP ports "
            "in its scope; specify the port explicitly",
        )


def _check_values(values: list[str] | None, path: str, issues: Issues) -> None:
    for i, value in enumerate(values or []):
        if value == "":
            issues.error(f"{path}[{i}]", "empty value not allowed")


def _check_source(source: Source, path: str, issues: Issues, *, custom: bool) -> None:
    if not source.model_dump(exclude_none=True):
        issues.error(path, "from.source must not be empty")
        return
    for field in type(source).model_fields:
        _check_values(getattr(source, field), f"{path}.{_alias(field)}", issues)
    for field in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
        for i, block in enumerate(getattr(source, field) or []):
            if block and (problem := check_ip_or_cidr(block)):
                issues.error(f"{path}.{_alias(field)}[{i}]", problem)
    for field in ("service_accounts", "not_service_accounts"):
        for i, account in enumerate(getattr(source, field) or []):
            ns, slash, name = account.partition("/")
            if not (slash and ns and name) or "/" in name:
                issues.error(
                    f"{path}.{_alias(field)}[{i}]",
                    f"service account {account!r} must be <namespace>/<name>",
                )
    has_sa = bool(source.service_accounts or source.not_service_accounts)
    if has_sa and (source.principals or source.not_principals or source.namespaces or source.not_namespaces):
        issues.error(path, "serviceAccounts cannot be combined with principals or namespaces")
    if custom:
        for field in _IDENTITY_FIELDS:
            if getattr(source, field):
                issues.error(
                    f"{path}.{_alias(field)}", f"{_alias(field)} is not supported with CUSTOM action"
                )


def _check_operation(op: Operation, path: str, issues: Issues) -> None:
    if not op.model_dump(exclude_none=True):
        issues.error(path, "to.operation must not be empty")
        return
    for field in type(op).model_fields:
        _check_values(getattr(op, field), f"{path}.{_alias(field)}", issues)
    for field in ("ports", "not_ports"):
        for i, port in enumerate(getattr(op, field) or []):
            if port and (problem := _port_problem(port)):
                issues.error(f"{path}.{_alias(field)}[{i}]", problem)
    for field in ("paths", "not_paths"):
        for i, p in enumerate(getattr(op, field) or []):
            if problem := _path_template_problem(p):
                issues.error(f"{path}.{_alias(field)}[{i}]", problem)


def _path_template_problem(path: str) -> str | None:
    """A path with ``{*}`` / ``{**}`` is an Envoy URI template: no named variables, ``{**}`` last."""
    if "{*}" not in path and "{**}" not in path:
        return None
    if _UNSUPPORTED_TEMPLATE.search(path):
        return f"invalid or unsupported path template {path!r}"
    if "{**}" in path and not path.endswith("{**}"):
        return f"invalid path template {path!r}: {{**}} must be the last segment"
    return None


def _port_problem(port: str) -> str | None:
    if not port.isdigit():
        return f"bad port ({port}): not a number"
    return check_port(int(port))


def _key_problem(key: str) -> str | None:
    if key in _PLAIN_KEYS or key in _IP_KEYS or key == "destination.port":
        return None
    if key in _REPLACED_KEYS:
        return _REPLACED_KEYS[key]
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key.startswith(_MAP_KEY_PREFIXES):
        open_at = key.find("[")
        if key.endswith("]") and 0 < open_at < len(key) - 2:
            return None
        return f"bad key ({key}): should have format a[b]"
    return f"unknown attribute: {key}"


def _check_condition(cond: Condition, path: str, issues: Issues, *, custom: bool) -> None:
    key = cond.key or ""
    if not key:
        issues.error(f"{path}.key", "key must not be empty")
        return
    if not cond.values and not cond.not_values:
        issues.error(path, f"at least one of values or notValues must be set for key {key}")
        return
    if problem := _key_problem(key):
        issues.error(f"{path}.key", problem)
    if custom and (key in ("source.namespace", "source.principal") or key.startswith("request.auth.")):
        issues.error(f"{path}.key", f"{key} is not supported with CUSTOM action")
    for field, values in (("values", cond.values), ("notValues", cond.not_values)):
        _check_values(values, f"{path}.{field}", issues)
        for i, value in enumerate(values or []):
            if not value:
                continue
            if key in _IP_KEYS and (problem := check_ip_or_cidr(value)):
                issues.error(f"{path}.{field}[{i}]", problem)
            if key == "destination.port" and (problem := _port_problem(value)):
                issues.error(f"{path}.{field}[{i}]", problem)
