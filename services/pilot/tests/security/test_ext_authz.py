"""AuthorizationPolicy CUSTOM → shadow RBAC + ext_authz (HTTP and gRPC providers), as Istio builds
them; a provider that cannot be used denies everything; AUDIT carries counting shadow rules."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_authz
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_authz
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2

from meshplane.pilot.generators.listeners import inbound_listeners
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.meshconfig import parse_mesh_config

from .helpers import HOST, NS, SIDECAR_LABELS, cart_proxy, cfg

AUTHZ = "authz.shop.svc.cluster.local"
MESH = f"""
extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: {NS}/{AUTHZ}
    port: 8000
    failOpen: true
    includeRequestHeadersInCheck: [x-user, "x-pre-*"]
    headersToUpstreamOnAllow: ["*-id"]
- name: grpc
  envoyExtAuthzGrpc: {{service: {AUTHZ}, port: 9000, timeout: 3s}}
- name: nowhere
  envoyExtAuthzGrpc: {{service: missing.shop.svc.cluster.local, port: 9000}}
"""


def _ctx(*configs: Config) -> PushContext:
    services = {
        "cart": Service(HOST, NS, (Port("http", 8080, "HTTP"), Port("tcp-db", 5432, "TCP"))),
        "authz": Service(AUTHZ, NS, (Port("http", 8000, "HTTP"), Port("grpc", 9000, "GRPC"))),
    }
    workloads = {
        "cart-1": Workload("cart-1", NS, "10.0.0.1", dict(SIDECAR_LABELS), "cart-sa", services=(HOST,))
    }
    by_key = {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}
    return build_push_context("1", by_key, services, workloads, mesh=parse_mesh_config(MESH, "mesh"))


def _custom(name: str, provider: str, rules: list[dict[str, Any]] | None = None) -> Config:
    rules = rules if rules is not None else [{"to": [{"operation": {"paths": ["/private*"]}}]}]
    return cfg(
        "AuthorizationPolicy", name, {"action": "CUSTOM", "provider": {"name": provider}, "rules": rules}
    )


def _chain_filters(ctx: PushContext, port: str) -> list[Any]:
    lis = next(x for x in inbound_listeners(ctx, cart_proxy()) if x.name.endswith(port))
    return list(lis.filter_chains[0].filters)


def _http_filters(ctx: PushContext) -> list[hcm.HttpFilter]:
    mgr = hcm.HttpConnectionManager()
    assert _chain_filters(ctx, "_8080")[0].typed_config.Unpack(mgr)
    return list(mgr.http_filters)


def _unpack(any_msg: Any, msg: Any) -> Any:
    assert any_msg.typed_config.Unpack(msg)
    return msg


def test_http_provider_shadow_rules_then_ext_authz_before_other_rbac() -> None:
    ctx = _ctx(_custom("ext", "http"), cfg("AuthorizationPolicy", "deny", {"action": "DENY", "rules": [{}]}))
    shadow, authz, deny, *_ = _http_filters(ctx)
    assert (shadow.name, authz.name, deny.name) == (
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.rbac",
    )
    rbac = _unpack(shadow, http_rbac_pb2.RBAC())
    assert not rbac.HasField("rules") and rbac.shadow_rules_stat_prefix == "istio_ext_authz_"
    assert list(rbac.shadow_rules.policies) == [f"istio-ext-authz-ns[{NS}]-policy[ext]-rule[0]"]
    config = _unpack(authz, http_authz.ExtAuthz())
    matcher = config.filter_enabled_metadata
    assert matcher.filter == "envoy.filters.http.rbac"
    assert [p.key for p in matcher.path] == ["istio_ext_authz_shadow_effective_policy_id"]
    assert matcher.value.string_match.prefix == "istio-ext-authz"
    uri = config.http_service.server_uri
    assert (uri.cluster, uri.uri, uri.timeout.seconds) == (f"outbound|8000||{AUTHZ}", f"http://{AUTHZ}", 600)
    assert config.failure_mode_allow and not config.HasField("status_on_error")
    assert [(p.exact, p.prefix, p.ignore_case) for p in config.allowed_headers.patterns] == [
        ("x-user", "", True),
        ("", "x-pre-", True),
    ]
    response = config.http_service.authorization_response
    assert [p.suffix for p in response.allowed_upstream_headers.patterns] == ["-id"]
    assert not response.HasField("allowed_client_headers")  # Envoy refuses an empty list
    assert _unpack(deny, http_rbac_pb2.RBAC()).rules.action == rbac_pb2.RBAC.DENY


def test_http_provider_leaves_tcp_alone_grpc_provider_guards_it() -> None:
    assert [f.name for f in _chain_filters(_ctx(_custom("ext", "http")), "_5432")] == [
        "envoy.filters.network.tcp_proxy"
    ]
    port_rule = [{"to": [{"operation": {"ports": ["5432"]}}]}]
    shadow, authz, proxy = _chain_filters(_ctx(_custom("ext", "grpc", port_rule)), "_5432")
    assert (shadow.name, authz.name, proxy.name) == (
        "envoy.filters.network.rbac",
        "envoy.filters.network.ext_authz",
        "envoy.filters.network.tcp_proxy",
    )
    rbac = _unpack(shadow, net_rbac_pb2.RBAC())
    assert rbac.shadow_rules_stat_prefix == "istio_ext_authz_" and len(rbac.shadow_rules.policies) == 1
    config = _unpack(authz, net_authz.ExtAuthz())
    grpc = config.grpc_service
    assert grpc.envoy_grpc.cluster_name == f"outbound|9000||{AUTHZ}"
    assert grpc.envoy_grpc.authority == f"outbound_.9000_._.{AUTHZ}" and grpc.timeout.seconds == 3
    assert config.filter_enabled_metadata.filter == "envoy.filters.network.rbac"


@pytest.mark.parametrize(
    ("policies", "reason"),
    [
        ([("a", "http"), ("b", "grpc")], "only 1 provider can be used per workload"),
        ([("a", "opa")], "available ext_authz providers are ['http', 'grpc', 'nowhere'] but found 'opa'"),
        ([("a", "nowhere")], "could not find service missing.shop.svc.cluster.local:9000"),
    ],
)
def test_unusable_provider_denies_every_request(
    policies: list[tuple[str, str]], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        filters = _http_filters(_ctx(*(_custom(n, p) for n, p in policies)))
    rules = _unpack(filters[0], http_rbac_pb2.RBAC()).rules
    assert rules.action == rbac_pb2.RBAC.DENY
    assert list(rules.policies) == ["default-deny-all-due-to-bad-CUSTOM-action"]
    assert all(f.name != "envoy.filters.http.ext_authz" for f in filters)
    assert reason in caplog.text and "CUSTOM" in caplog.text


def test_audit_is_a_log_action_with_counting_shadow_rules() -> None:
    audit = cfg(
        "AuthorizationPolicy",
        "audit",
        {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/a*"]}}]}]},
    )
    rbac = _unpack(_http_filters(_ctx(audit))[0], http_rbac_pb2.RBAC())
    assert rbac.rules.action == rbac_pb2.RBAC.LOG
    assert rbac.shadow_rules.action == rbac_pb2.RBAC.ALLOW
    assert (
        list(rbac.shadow_rules.policies) == list(rbac.rules.policies) == [f"ns[{NS}]-policy[audit]-rule[0]"]
    )
    assert rbac.shadow_rules_stat_prefix == "istio_audit_"
