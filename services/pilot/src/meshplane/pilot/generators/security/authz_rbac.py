"""AuthorizationPolicy → Envoy RBAC filters (HTTP and network) for one workload.

Istio's model: policies in the root namespace apply mesh-wide, others to their namespace, a
``selector`` narrows to matching workloads. Evaluation order is CUSTOM, DENY, ALLOW (AUDIT only
logs): a request denied by any DENY policy is refused; if any ALLOW policy applies, the request
needs to match one of its rules; no ALLOW policy = allowed. ``spec: {}`` is an ALLOW policy with
no rules, so it denies everything. A rule is ``from`` (OR of sources, each an AND of fields) AND
``to`` (same for operations) AND every ``when``. CUSTOM needs an ext_authz provider from the mesh
config; meshplane has none, so — as Istio does for an unknown provider — it denies the requests
the policy's rules match, and logs why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from meshplane.pilot.generators.common import cidr_range, pack
from meshplane.pilot.generators.security.selection import applicable
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.push_context import PushContext

log = logging.getLogger("meshplane.pilot.security")

KIND = "AuthorizationPolicy"
HTTP_RBAC = "envoy.filters.http.rbac"
NET_RBAC = "envoy.filters.network.rbac"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
_ORDER = ("CUSTOM", "DENY", "ALLOW", "AUDIT")
_ACTIONS = {"CUSTOM": rbac_pb2.RBAC.DENY, "DENY": rbac_pb2.RBAC.DENY, "ALLOW": rbac_pb2.RBAC.ALLOW}


class UnsupportedRule(ValueError):
    """A rule uses a field this kind of traffic cannot check (HTTP field on TCP) or an unknown key."""


# ---- matchers ---------------------------------------------------------------------------
def _string(value: str, ignore_case: bool = False) -> string_pb2.StringMatcher:
    """Istio's value forms: exact, ``prefix*``, ``*suffix``, ``*`` (present)."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=value, ignore_case=ignore_case)


def _header(name: str, value: str) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=name, string_match=_string(value, ignore_case=name == ":authority"))


def _payload(claim: list[str], value: str) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=JWT_FILTER)
    for key in [JWT_PAYLOAD, *claim]:
        m.path.add(key=key)
    if value == "*":
        m.value.present_match = True
    else:
        m.value.string_match.CopyFrom(_string(value))
    return m


def _claim(claim: list[str], value: str) -> metadata_pb2.MetadataMatcher:
    """A claim may be a string or a list of strings (``aud``, ``groups``)."""
    m = metadata_pb2.MetadataMatcher(filter=JWT_FILTER)
    for key in [JWT_PAYLOAD, *claim]:
        m.path.add(key=key)
    one = value_pb2.ValueMatcher(string_match=_string(value))
    m.value.or_match.value_matchers.extend(
        [one, value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))]
    )
    return m


def _ids(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    return (
        principals[0]
        if len(principals) == 1
        else rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=principals))
    )


def _request_principal(value: str) -> rbac_pb2.Principal:
    """``iss/sub`` of a validated JWT (split at the last ``/``); ``*`` = any valid JWT."""
    if value == "*":
        return rbac_pb2.Principal(metadata=_payload(["iss"], "*"))
    iss, _, sub = value.rpartition("/")
    if not iss:
        return rbac_pb2.Principal(metadata=_payload(["iss"], value))
    return rbac_pb2.Principal(
        and_ids=rbac_pb2.Principal.Set(
            ids=[
                rbac_pb2.Principal(metadata=_payload(["iss"], iss)),
                rbac_pb2.Principal(metadata=_payload(["sub"], sub)),
            ]
        )
    )


def _principal_name(value: str) -> rbac_pb2.Principal:
    spiffe = value if value == "*" else "spiffe://" + value.removeprefix("spiffe://")
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=_string(spiffe)))


def _namespace(value: str) -> rbac_pb2.Principal:
    regex = r"spiffe://[^/]*/ns/" + (".*" if value == "*" else re.escape(value)) + "/.*"
    name = string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=name))


def _path(value: str) -> rbac_pb2.Permission:
    return rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=_string(value)))


def _port(value: str) -> rbac_pb2.Permission:
    return rbac_pb2.Permission(destination_port=int(value))


SourceFn = Callable[[str], rbac_pb2.Principal]
OpFn = Callable[[str], rbac_pb2.Permission]

#: field → (builder, HTTP only)
_SOURCE: dict[str, tuple[SourceFn, bool]] = {
    "principals": (_principal_name, False),
    "namespaces": (_namespace, False),
    "ipBlocks": (lambda v: rbac_pb2.Principal(direct_remote_ip=cidr_range(v)), False),
    "remoteIpBlocks": (lambda v: rbac_pb2.Principal(remote_ip=cidr_range(v)), True),
    "requestPrincipals": (_request_principal, True),
}
_OPERATION: dict[str, tuple[OpFn, bool]] = {
    "hosts": (lambda v: rbac_pb2.Permission(header=_header(":authority", v)), True),
    "ports": (_port, False),
    "methods": (lambda v: rbac_pb2.Permission(header=_header(":method", v)), True),
    "paths": (_path, True),
}


def _condition(key: str, value: str) -> rbac_pb2.Principal | rbac_pb2.Permission:
    """A ``when`` key → a principal (source side) or a permission (destination side)."""
    if key.startswith("request.headers[") and key.endswith("]"):
        return rbac_pb2.Principal(header=_header(key[len("request.headers[") : -1], value))
    if key.startswith("request.auth.claims[") and key.endswith("]"):
        inner = key[len("request.auth.claims[") : -1]
        return rbac_pb2.Principal(
            metadata=_claim(inner.replace("][", "]\0[").strip("[]").split("]\0["), value)
        )
    simple: dict[str, Callable[[str], rbac_pb2.Principal | rbac_pb2.Permission]] = {
        "source.ip": lambda v: rbac_pb2.Principal(direct_remote_ip=cidr_range(v)),
        "remote.ip": lambda v: rbac_pb2.Principal(remote_ip=cidr_range(v)),
        "source.namespace": _namespace,
        "source.principal": _principal_name,
        "request.auth.principal": _request_principal,
        "request.auth.audiences": lambda v: rbac_pb2.Principal(metadata=_claim(["aud"], v)),
        "request.auth.presenter": lambda v: rbac_pb2.Principal(metadata=_claim(["azp"], v)),
        "destination.ip": lambda v: rbac_pb2.Permission(destination_ip=cidr_range(v)),
        "destination.port": _port,
        "connection.sni": lambda v: rbac_pb2.Permission(requested_server_name=_string(v)),
    }
    if key not in simple:
        raise UnsupportedRule(f"when key {key!r} is not a supported attribute")
    return simple[key](value)


_HTTP_ONLY_WHEN = ("request.",)


# ---- rules ------------------------------------------------------------------------------
def _any_principal(parts: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not parts:
        return rbac_pb2.Principal(any=True)
    return parts[0] if len(parts) == 1 else rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=parts))


def _any_permission(parts: list[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if not parts:
        return rbac_pb2.Permission(any=True)
    return (
        parts[0] if len(parts) == 1 else rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=parts))
    )


def _or_permissions(parts: list[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    return parts[0] if len(parts) == 1 else rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=parts))


def _usable(http_only: bool, http: bool, deny: bool, what: str) -> bool:
    """HTTP-only fields on TCP: ignored in DENY rules (broader), the whole ALLOW rule skipped."""
    if not http_only or http:
        return True
    if deny:
        return False
    raise UnsupportedRule(f"{what} only applies to HTTP traffic")


def _fields(
    spec: dict[str, Any],
    table: dict[str, tuple[Any, bool]],
    http: bool,
    deny: bool,
    negate: Callable[[Any], Any],
) -> list[Any]:
    parts: list[Any] = []
    for name, (build, http_only) in table.items():
        for key, positive in ((name, True), ("not" + name[0].upper() + name[1:], False)):
            values = spec.get(key) or []
            if not values or not _usable(http_only, http, deny, key):
                continue
            built = [build(str(v)) for v in values]
            if isinstance(built[0], rbac_pb2.Principal):
                one: Any = _ids(built)
            else:
                one = _or_permissions(built)
            parts.append(one if positive else negate(one))
    return parts


def _not_id(p: rbac_pb2.Principal) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(not_id=p)


def _not_rule(p: rbac_pb2.Permission) -> rbac_pb2.Permission:
    return rbac_pb2.Permission(not_rule=p)


def build_rule(rule: dict[str, Any], http: bool, deny: bool) -> rbac_pb2.Policy:
    """One AuthorizationPolicy rule → one RBAC policy; raises UnsupportedRule."""
    principals: list[rbac_pb2.Principal] = []
    permissions: list[rbac_pb2.Permission] = []
    sources = [s.get("source") or {} for s in rule.get("from") or []]
    if sources:
        principals.append(_ids([_any_principal(_fields(s, _SOURCE, http, deny, _not_id)) for s in sources]))
    ops = [o.get("operation") or {} for o in rule.get("to") or []]
    if ops:
        permissions.append(
            _or_permissions([_any_permission(_fields(o, _OPERATION, http, deny, _not_rule)) for o in ops])
        )
    for cond in rule.get("when") or []:
        key = str(cond.get("key", ""))
        if not _usable(key.startswith(_HTTP_ONLY_WHEN), http, deny, f"when key {key!r}"):
            continue
        for values, positive in ((cond.get("values") or [], True), (cond.get("notValues") or [], False)):
            if not values:
                continue
            built = [_condition(key, str(v)) for v in values]
            if isinstance(built[0], rbac_pb2.Principal):
                p = _ids([b for b in built if isinstance(b, rbac_pb2.Principal)])
                principals.append(p if positive else _not_id(p))
            else:
                q = _or_permissions([b for b in built if isinstance(b, rbac_pb2.Permission)])
                permissions.append(q if positive else _not_rule(q))
    return rbac_pb2.Policy(
        permissions=[_any_permission(permissions)], principals=[_any_principal(principals)]
    )


def _action(cfg: Config) -> str:
    action = str(cfg.spec.get("action") or "ALLOW").upper()
    return action if action in _ORDER else "ALLOW"


def build_rbac(policies: list[Config], http: bool) -> list[rbac_pb2.RBAC]:
    """RBAC rule sets in Istio's evaluation order: DENY (with CUSTOM), ALLOW, AUDIT (LOG)."""
    by_action: dict[str, rbac_pb2.RBAC] = {}
    for cfg in policies:
        action = _action(cfg)
        target = "DENY" if action == "CUSTOM" else action
        rbac = by_action.setdefault(
            target, rbac_pb2.RBAC(action=rbac_pb2.RBAC.LOG if target == "AUDIT" else _ACTIONS[target])
        )
        rules = list(cfg.spec.get("rules") or [])
        if action == "CUSTOM":
            log.warning(
                "%s %s/%s: CUSTOM action needs an ext_authz provider (%r) and none is configured; "
                "denying the requests its rules match",
                KIND,
                cfg.namespace,
                cfg.name,
                (cfg.spec.get("provider") or {}).get("name", ""),
            )
            rules = rules or [{}]
        for i, rule in enumerate(rules):
            try:
                policy = build_rule(rule, http, deny=target != "ALLOW")
            except (UnsupportedRule, ValueError) as exc:
                log.warning("%s %s/%s rule %d skipped: %s", KIND, cfg.namespace, cfg.name, i, exc)
                continue
            rbac.policies[f"ns[{cfg.namespace}]-policy[{cfg.name}]-rule[{i}]"].CopyFrom(policy)
    return [by_action[a] for a in ("DENY", "ALLOW", "AUDIT") if a in by_action]


def http_rbac_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[hcm.HttpFilter]:
    policies = applicable(ctx, KIND, namespace, labels)
    return [
        hcm.HttpFilter(name=HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC(rules=rules)))
        for rules in build_rbac(policies, http=True)
    ]


def network_rbac_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[lc.Filter]:
    policies = applicable(ctx, KIND, namespace, labels)
    return [
        lc.Filter(name=NET_RBAC, typed_config=pack(net_rbac_pb2.RBAC(rules=rules, stat_prefix="tcp.")))
        for rules in build_rbac(policies, http=False)
    ]
