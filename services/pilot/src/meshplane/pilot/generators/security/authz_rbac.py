"""AuthorizationPolicy → Envoy RBAC rules for one workload.

Istio's model: policies in the root namespace apply mesh-wide, others to their namespace, a
``selector`` narrows to matching workloads. Evaluation order is CUSTOM, then AUDIT, DENY, ALLOW:
a request denied by any DENY policy is refused; if any ALLOW policy applies, the request
needs to match one of its rules; no ALLOW policy = allowed. ``spec: {}`` is an ALLOW policy with
no rules, so it denies everything. A rule is ``from`` (OR of sources, each an AND of fields) AND
``to`` (same for operations) AND every ``when``. The filters per action are assembled in ``authz``
(AUDIT, DENY, ALLOW, dry-run) and ``ext_authz`` (CUSTOM).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from meshplane.pilot.generators.common import cidr_range
from meshplane.pilot.model.config import Config
from meshplane.shared.config.models import AuthorizationPolicy, Rule, Source
from meshplane.shared.config.models.security import Operation

log = logging.getLogger("meshplane.pilot.security")
S = TypeVar("S", Source, Operation)

HTTP_RBAC = "envoy.filters.http.rbac"
NET_RBAC = "envoy.filters.network.rbac"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
TCP_STAT_PREFIX = "tcp."
_ORDER = ("CUSTOM", "AUDIT", "DENY", "ALLOW")


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


def claim_matcher(claim: list[str], value: string_pb2.StringMatcher | None) -> metadata_pb2.MetadataMatcher:
    """A validated JWT's claim (a string, or a list of strings such as ``aud`` or ``groups``)
    matching ``value``; present when ``value`` is None."""
    m = metadata_pb2.MetadataMatcher(filter=JWT_FILTER)
    for key in [JWT_PAYLOAD, *claim]:
        m.path.add(key=key)
    if value is None:
        m.value.present_match = True
        return m
    one = value_pb2.ValueMatcher(string_match=value)
    m.value.or_match.value_matchers.extend(
        [one, value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))]
    )
    return m


def _claim(claim: list[str], value: str) -> metadata_pb2.MetadataMatcher:
    return claim_matcher(claim, _string(value))


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


def _service_account(value: str) -> rbac_pb2.Principal:
    """``<namespace>/<name>``: the peer's SPIFFE identity in any trust domain (as ``namespaces``)."""
    ns, _, name = value.partition("/")
    regex = r"spiffe://[^/]*/ns/" + re.escape(ns) + "/sa/" + re.escape(name)
    name_matcher = string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=name_matcher))


def _ip_block(value: str) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(direct_remote_ip=cidr_range(value))


def _remote_ip_block(value: str) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(remote_ip=cidr_range(value))


def _host(value: str) -> rbac_pb2.Permission:
    return rbac_pb2.Permission(header=_header(":authority", value))


def _method(value: str) -> rbac_pb2.Permission:
    return rbac_pb2.Permission(header=_header(":method", value))


Values = list[str] | None
#: One field of a source or operation: its Istio name, its values and its ``not`` values, how
#: each value is checked, and whether only HTTP traffic can be checked for it.
Field = tuple[str, Callable[[S], tuple[Values, Values]], Callable[[str], Any], bool]

# fmt: off
_SOURCE: list[Field[Source]] = [
    ("principals", lambda s: (s.principals, s.not_principals), _principal_name, False),
    ("namespaces", lambda s: (s.namespaces, s.not_namespaces), _namespace, False),
    ("serviceAccounts", lambda s: (s.service_accounts, s.not_service_accounts), _service_account, False),
    ("ipBlocks", lambda s: (s.ip_blocks, s.not_ip_blocks), _ip_block, False),
    ("remoteIpBlocks", lambda s: (s.remote_ip_blocks, s.not_remote_ip_blocks), _remote_ip_block, True),
    (
        "requestPrincipals",
        lambda s: (s.request_principals, s.not_request_principals),
        _request_principal,
        True,
    ),
]
_OPERATION: list[Field[Operation]] = [
    ("hosts", lambda o: (o.hosts, o.not_hosts), _host, True),
    ("ports", lambda o: (o.ports, o.not_ports), _port, False),
    ("methods", lambda o: (o.methods, o.not_methods), _method, True),
    ("paths", lambda o: (o.paths, o.not_paths), _path, True),
]
# fmt: on


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
    spec: S,
    table: list[Field[S]],
    http: bool,
    deny: bool,
    negate: Callable[[Any], Any],
) -> list[Any]:
    parts: list[Any] = []
    for name, values_of, build, http_only in table:
        negated = "not" + name[0].upper() + name[1:]
        positive_values, negative_values = values_of(spec)
        for key, values, positive in ((name, positive_values, True), (negated, negative_values, False)):
            if not values or not _usable(http_only, http, deny, key):
                continue
            built = [build(v) for v in values]
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


def build_rule(rule: Rule, http: bool, deny: bool) -> rbac_pb2.Policy:
    """One AuthorizationPolicy rule → one RBAC policy; raises UnsupportedRule."""
    principals: list[rbac_pb2.Principal] = []
    permissions: list[rbac_pb2.Permission] = []
    sources = [s.source or Source() for s in rule.from_ or []]
    if sources:
        principals.append(_ids([_any_principal(_fields(s, _SOURCE, http, deny, _not_id)) for s in sources]))
    ops = [o.operation or Operation() for o in rule.to or []]
    if ops:
        permissions.append(
            _or_permissions([_any_permission(_fields(o, _OPERATION, http, deny, _not_rule)) for o in ops])
        )
    for cond in rule.when or []:
        key = cond.key or ""
        if not _usable(key.startswith(_HTTP_ONLY_WHEN), http, deny, f"when key {key!r}"):
            continue
        for values, positive in ((cond.values or [], True), (cond.not_values or [], False)):
            if not values:
                continue
            built = [_condition(key, v) for v in values]
            if isinstance(built[0], rbac_pb2.Principal):
                p = _ids([b for b in built if isinstance(b, rbac_pb2.Principal)])
                principals.append(p if positive else _not_id(p))
            else:
                q = _or_permissions([b for b in built if isinstance(b, rbac_pb2.Permission)])
                permissions.append(q if positive else _not_rule(q))
    return rbac_pb2.Policy(
        permissions=[_any_permission(permissions)], principals=[_any_principal(principals)]
    )


def action_of(cfg: Config[AuthorizationPolicy]) -> str:
    action = cfg.spec.action.value if cfg.spec.action else "ALLOW"
    return action if action in _ORDER else "ALLOW"


def rule_policies(
    cfg: Config[AuthorizationPolicy], http: bool, deny: bool, prefix: str = ""
) -> dict[str, rbac_pb2.Policy]:
    """One RBAC policy per rule, named as Istio names them (``<prefix>ns[..]-policy[..]-rule[i]``);
    a rule this traffic cannot check is skipped and logged."""
    out: dict[str, rbac_pb2.Policy] = {}
    for i, rule in enumerate(cfg.spec.rules or []):
        try:
            policy = build_rule(rule, http, deny=deny)
        except (UnsupportedRule, ValueError) as exc:
            log.warning("%s %s/%s rule %d skipped: %s", cfg.kind, cfg.namespace, cfg.name, i, exc)
            continue
        out[f"{prefix}ns[{cfg.namespace}]-policy[{cfg.name}]-rule[{i}]"] = policy
    return out
