"""The authorization filters of a workload in Istio's order: CUSTOM first (a shadow RBAC marking
the requests its rules match, then ext_authz for those: ``ext_authz``), then one RBAC filter each
for AUDIT, DENY and ALLOW.

AUDIT is Envoy's LOG action, as Istio: a matching request is marked in dynamic metadata
(``envoy.common`` ``access_log_hint``: true), never refused; meshplane adds the same rules as
shadow rules so audited requests are also counted and their policy named (``_audit_shadow``).
istio-proxy's audit plugins, which write the marked requests somewhere, do not exist in upstream
Envoy. An ALLOW or DENY policy annotated ``istio.io/dry-run: "true"`` is evaluated as shadow rules
of its action's filter (stats and metadata under ``istio_dry_run_allow_``/``istio_dry_run_deny_``),
never enforced.
"""

from __future__ import annotations

from typing import TypeVar

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.security.authz_rbac import (
    HTTP_RBAC,
    NET_RBAC,
    TCP_STAT_PREFIX,
    action_of,
    rule_policies,
)
from meshplane.pilot.generators.security.ext_authz import custom_http_filters, custom_network_filters
from meshplane.pilot.generators.security.selection import applicable
from meshplane.pilot.generators.security.trust_domains import with_aliases
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import AuthorizationPolicy

_ACTIONS = {"AUDIT": rbac_pb2.RBAC.LOG, "DENY": rbac_pb2.RBAC.DENY, "ALLOW": rbac_pb2.RBAC.ALLOW}
AUDIT_STAT_PREFIX = "istio_audit_"
_SHADOW_PREFIXES = {
    "AUDIT": AUDIT_STAT_PREFIX,
    "DENY": "istio_dry_run_deny_",
    "ALLOW": "istio_dry_run_allow_",
}
DRY_RUN = "istio.io/dry-run"
R = TypeVar("R", http_rbac_pb2.RBAC, net_rbac_pb2.RBAC)


def http_authz_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[hcm.HttpFilter]:
    policies = with_aliases(applicable(ctx, AuthorizationPolicy, namespace, labels), ctx.mesh)
    custom = [p for p in policies if action_of(p) == "CUSTOM"]
    return custom_http_filters(ctx, custom) + http_rbac_filters(policies)


def network_authz_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[lc.Filter]:
    policies = with_aliases(applicable(ctx, AuthorizationPolicy, namespace, labels), ctx.mesh)
    custom = [p for p in policies if action_of(p) == "CUSTOM"]
    return custom_network_filters(ctx, custom) + network_rbac_filters(policies)


def dry_run(cfg: Config[AuthorizationPolicy]) -> bool:
    """``istio.io/dry-run: "true"`` (Go's boolean forms): evaluated and reported, not enforced."""
    return cfg.annotation(DRY_RUN) in ("1", "t", "T", "TRUE", "true", "True")


def _rule_sets(
    policies: list[Config[AuthorizationPolicy]], http: bool
) -> tuple[dict[str, rbac_pb2.RBAC], dict[str, rbac_pb2.RBAC]]:
    """The enforced and the dry-run rule sets by action (CUSTOM excluded: ``ext_authz`` builds it)."""
    enforced: dict[str, rbac_pb2.RBAC] = {}
    dry: dict[str, rbac_pb2.RBAC] = {}
    for cfg in policies:
        action = action_of(cfg)
        if action == "CUSTOM":
            continue
        target = dry if action != "AUDIT" and dry_run(cfg) else enforced
        rbac = target.setdefault(action, rbac_pb2.RBAC(action=_ACTIONS[action]))
        for name, policy in rule_policies(cfg, http, deny=action != "ALLOW").items():
            rbac.policies[name].CopyFrom(policy)
    return enforced, dry


def build_rbac(policies: list[Config[AuthorizationPolicy]], http: bool) -> list[rbac_pb2.RBAC]:
    """The enforced RBAC rule sets in Istio's evaluation order: AUDIT (LOG), DENY, ALLOW."""
    enforced, _ = _rule_sets(policies, http)
    return [enforced[a] for a in ("AUDIT", "DENY", "ALLOW") if a in enforced]


def _filters(
    policies: list[Config[AuthorizationPolicy]], http: bool
) -> list[tuple[rbac_pb2.RBAC | None, rbac_pb2.RBAC | None, str]]:
    """Per RBAC filter, in order: its enforced rules, its shadow rules and their stat prefix.
    Dry-run ALLOW/DENY policies are shadow rules (Istio's ``istio_dry_run_allow_``/``_deny_``)."""
    enforced, dry = _rule_sets(policies, http)
    out: list[tuple[rbac_pb2.RBAC | None, rbac_pb2.RBAC | None, str]] = []
    for action in ("AUDIT", "DENY", "ALLOW"):
        rules = enforced.get(action)
        shadow = _audit_shadow(rules) if action == "AUDIT" and rules is not None else dry.get(action)
        if rules is not None or shadow is not None:
            out.append((rules, shadow, _SHADOW_PREFIXES[action] if shadow is not None else ""))
    return out


def _audit_shadow(rules: rbac_pb2.RBAC) -> rbac_pb2.RBAC:
    """AUDIT's rules again as ALLOW shadow rules: Envoy then counts the audited requests
    (``rbac.istio_audit_.shadow_allowed``) and names the matching policy in dynamic metadata
    (``istio_audit_shadow_effective_policy_id``), which the LOG action alone does not."""
    shadow = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    shadow.policies.MergeFrom(rules.policies)
    return shadow


def _with(rbac: R, rules: rbac_pb2.RBAC | None, shadow: rbac_pb2.RBAC | None) -> R:
    if rules is not None:
        rbac.rules.CopyFrom(rules)
    if shadow is not None:
        rbac.shadow_rules.CopyFrom(shadow)
    return rbac


def http_rbac_filters(policies: list[Config[AuthorizationPolicy]]) -> list[hcm.HttpFilter]:
    return [
        hcm.HttpFilter(
            name=HTTP_RBAC,
            typed_config=pack(_with(http_rbac_pb2.RBAC(shadow_rules_stat_prefix=prefix), rules, shadow)),
        )
        for rules, shadow, prefix in _filters(policies, http=True)
    ]


def network_rbac_filters(policies: list[Config[AuthorizationPolicy]]) -> list[lc.Filter]:
    def rbac(prefix: str) -> net_rbac_pb2.RBAC:
        return net_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX, shadow_rules_stat_prefix=prefix)

    return [
        lc.Filter(name=NET_RBAC, typed_config=pack(_with(rbac(prefix), rules, shadow)))
        for rules, shadow, prefix in _filters(policies, http=False)
    ]
