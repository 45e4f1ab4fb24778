"""AuthorizationPolicy → Envoy RBAC: actions, evaluation order, field and condition translation."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.listeners import inbound_listeners, outbound_listeners
from meshplane.pilot.generators.security.authz import build_rbac
from meshplane.pilot.generators.security.authz_rbac import build_rule
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.shared.config.models import Rule

from .helpers import NS, cart_proxy, cfg, context


def ap(name: str, spec: dict[str, Any], ns: str = NS) -> Any:
    return cfg("AuthorizationPolicy", name, spec, ns)


def _http_filters(*configs: Any) -> list[hcm.HttpFilter]:
    lis = next(x for x in inbound_listeners(context(*configs), cart_proxy()) if x.name.endswith("_8080"))
    mgr = hcm.HttpConnectionManager()
    assert lis.filter_chains[0].filters[0].typed_config.Unpack(mgr)
    return list(mgr.http_filters)


def _rules(f: hcm.HttpFilter) -> rbac_pb2.RBAC:
    msg = http_rbac_pb2.RBAC()
    assert f.typed_config.Unpack(msg)
    return msg.rules


def test_empty_spec_is_allow_nothing() -> None:
    filters = _http_filters(ap("deny-all", {}))
    assert filters[0].name == "envoy.filters.http.rbac"
    rules = _rules(filters[0])
    assert rules.action == rbac_pb2.RBAC.ALLOW and not rules.policies
    assert filters[-1].name == "envoy.filters.http.router"


def test_audit_before_deny_before_allow_before_other_filters() -> None:
    """Istio's order: AUDIT first, so a request a DENY policy refuses is still audited."""
    filters = _http_filters(
        ap("audit", {"action": "AUDIT", "rules": [{}]}),
        ap("allow", {"action": "ALLOW", "rules": [{}]}),
        ap("deny", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
    )
    actions = [_rules(f).action for f in filters if f.name == "envoy.filters.http.rbac"]
    assert actions == [rbac_pb2.RBAC.LOG, rbac_pb2.RBAC.DENY, rbac_pb2.RBAC.ALLOW]
    assert filters[0].name == "envoy.filters.http.rbac"


def test_policies_apply_by_namespace_and_selector() -> None:
    other_ns = ap("x", {}, ns="elsewhere")
    other_app = ap("y", {"selector": {"matchLabels": {"app": "web"}}})
    assert all(f.name != "envoy.filters.http.rbac" for f in _http_filters(other_ns, other_app))
    mesh_wide = ap("z", {}, ns="istio-system")
    assert _http_filters(mesh_wide)[0].name == "envoy.filters.http.rbac"


def test_sources_and_operations() -> None:
    rule = {
        "from": [
            {"source": {"principals": ["cluster.local/ns/shop/sa/web"], "notNamespaces": ["dev"]}},
            {"source": {"ipBlocks": ["10.1.0.0/16"]}},
        ],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*", "*.css", "/exact"]}}],
    }
    policy = build_rule(Rule.model_validate(rule), http=True, deny=False)
    principal = policy.principals[0]
    first, second = principal.or_ids.ids
    assert first.and_ids.ids[0].authenticated.principal_name.exact == "spiffe://cluster.local/ns/shop/sa/web"
    assert (
        first.and_ids.ids[1].not_id.authenticated.principal_name.safe_regex.regex
        == r"spiffe://[^/]*/ns/dev/.*"
    )
    assert (
        second.direct_remote_ip.address_prefix == "10.1.0.0"
        and second.direct_remote_ip.prefix_len.value == 16
    )
    method, paths = policy.permissions[0].and_rules.rules
    assert method.header.name == ":method" and method.header.string_match.exact == "GET"
    kinds = [p.url_path.path.WhichOneof("match_pattern") for p in paths.or_rules.rules]
    assert kinds == ["prefix", "suffix", "exact"]


def test_service_accounts_match_the_peer_identity_in_any_trust_domain() -> None:
    rule = {"from": [{"source": {"serviceAccounts": ["shop/web"], "notServiceAccounts": ["shop/web.x"]}}]}
    policy = build_rule(Rule.model_validate(rule), http=True, deny=False)
    allow, refuse = policy.principals[0].and_ids.ids
    assert allow.authenticated.principal_name.safe_regex.regex == r"spiffe://[^/]*/ns/shop/sa/web"
    assert refuse.not_id.authenticated.principal_name.safe_regex.regex == r"spiffe://[^/]*/ns/shop/sa/web\.x"


def test_when_conditions_and_request_principals() -> None:
    rule = {
        "from": [{"source": {"requestPrincipals": ["https://idp.example/alice"]}}],
        "when": [
            {"key": "request.headers[x-tenant]", "values": ["acme"]},
            {"key": "source.ip", "notValues": ["10.9.0.0/16"]},
            {"key": "destination.port", "values": ["8080"]},
            {"key": "request.auth.claims[groups]", "values": ["admins"]},
        ],
    }
    policy = build_rule(Rule.model_validate(rule), http=True, deny=False)
    ids = policy.principals[0].and_ids.ids
    iss, sub = ids[0].and_ids.ids
    assert [p.key for p in iss.metadata.path] == ["payload", "iss"]
    assert iss.metadata.filter == "envoy.filters.http.jwt_authn"
    assert iss.metadata.value.string_match.exact == "https://idp.example"
    assert sub.metadata.value.string_match.exact == "alice"
    assert ids[1].header.name == "x-tenant"
    assert ids[2].not_id.direct_remote_ip.address_prefix == "10.9.0.0"
    assert [p.key for p in ids[3].metadata.path] == ["payload", "groups"]
    assert policy.permissions[0].destination_port == 8080


def test_tcp_allow_with_http_fields_is_skipped_deny_is_broadened(caplog: pytest.LogCaptureFixture) -> None:
    allow = ap("a", {"rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]})
    deny = ap(
        "d", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"], "ports": ["5432"]}}]}]}
    )
    with caplog.at_level(logging.WARNING):
        deny_rbac, allow_rbac = build_rbac([allow, deny], http=False)
    assert not allow_rbac.policies  # nothing allowed over TCP
    assert "only applies to HTTP" in caplog.text
    (only,) = deny_rbac.policies.values()
    assert only.permissions[0].destination_port == 5432  # the path is dropped, the port stays


def test_network_rbac_on_tcp_chain() -> None:
    ctx = context(ap("d", {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["evil"]}}]}]}))
    lis = next(x for x in inbound_listeners(ctx, cart_proxy()) if x.name.endswith("_5432"))
    names = [f.name for f in lis.filter_chains[0].filters]
    assert names == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]
    net = net_rbac_pb2.RBAC()
    assert lis.filter_chains[0].filters[0].typed_config.Unpack(net)
    assert net.rules.action == rbac_pb2.RBAC.DENY and net.stat_prefix


def test_custom_without_provider_denies_everything_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """As Istio: a CUSTOM provider missing from MeshConfig denies every request, not only its rules'."""
    custom = ap(
        "ext",
        {
            "action": "CUSTOM",
            "provider": {"name": "opa"},
            "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}],
        },
    )
    assert build_rbac([custom], http=True) == []  # CUSTOM is not an RBAC rule set
    with caplog.at_level(logging.WARNING):
        (rbac, *rest) = _http_filters(custom)
    rules = _rules(rbac)
    assert rules.action == rbac_pb2.RBAC.DENY
    assert list(rules.policies) == ["default-deny-all-due-to-bad-CUSTOM-action"]
    assert rest[0].name != "envoy.filters.http.ext_authz"
    assert "CUSTOM" in caplog.text and "opa" in caplog.text and "shop/ext" in caplog.text


def test_unknown_condition_key_skips_rule_with_a_clear_log(caplog: pytest.LogCaptureFixture) -> None:
    bad = ap("bad", {"rules": [{"when": [{"key": "source.planet", "values": ["mars"]}]}]})
    with caplog.at_level(logging.WARNING):
        (rbac,) = build_rbac([bad], http=True)
    assert not rbac.policies
    assert "source.planet" in caplog.text and "shop/bad" in caplog.text


def test_gateway_gets_policies_selecting_its_labels() -> None:
    md = struct_pb2.Struct()
    md.update({"LABELS": {"istio": "ingressgateway"}})
    router = parse_proxy("router~10.0.0.9~gw.istio-system~istio-system.svc.cluster.local", md)
    server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    gateway = cfg(
        "Gateway", "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}, ns="istio-system"
    )
    deny = ap(
        "gw-deny",
        {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "action": "DENY", "rules": [{}]},
        ns="istio-system",
    )
    for configs, has_rbac in (((gateway,), False), ((gateway, deny), True)):
        (lis,) = outbound_listeners(context(*configs), router)
        mgr = hcm.HttpConnectionManager()
        assert lis.filter_chains[0].filters[0].typed_config.Unpack(mgr)
        names = [f.name for f in mgr.http_filters]
        assert ("envoy.filters.http.rbac" in names) is has_rbac
        assert names[-1] == "envoy.filters.http.router"
        assert mgr.forward_client_cert_details == hcm.HttpConnectionManager.SANITIZE  # gateway default kept


def test_dry_run_policies_are_shadow_rules_never_enforced() -> None:
    dry = {"annotations": (("istio.io/dry-run", "true"),)}
    deny_dry = dataclasses.replace(ap("d", {"action": "DENY", "rules": [{}]}), **dry)
    allow_dry = dataclasses.replace(ap("a", {"rules": [{}]}), **dry)
    allow = ap("enforced", {"rules": [{"to": [{"operation": {"paths": ["/ok"]}}]}]})
    filters = [f for f in _http_filters(deny_dry, allow_dry, allow) if f.name == "envoy.filters.http.rbac"]
    deny, allowed = (_unpack_rbac(f) for f in filters)
    assert not deny.HasField("rules") and deny.shadow_rules.action == rbac_pb2.RBAC.DENY
    assert list(deny.shadow_rules.policies) == ["ns[shop]-policy[d]-rule[0]"]
    assert deny.shadow_rules_stat_prefix == "istio_dry_run_deny_"
    assert list(allowed.rules.policies) == ["ns[shop]-policy[enforced]-rule[0]"]
    assert list(allowed.shadow_rules.policies) == ["ns[shop]-policy[a]-rule[0]"]
    assert allowed.shadow_rules_stat_prefix == "istio_dry_run_allow_"
    assert build_rbac([deny_dry, allow_dry], http=True) == []  # nothing enforced


def _unpack_rbac(f: hcm.HttpFilter) -> http_rbac_pb2.RBAC:
    msg = http_rbac_pb2.RBAC()
    assert f.typed_config.Unpack(msg)
    return msg
