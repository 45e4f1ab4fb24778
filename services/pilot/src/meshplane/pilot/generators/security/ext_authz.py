"""AuthorizationPolicy ``action: CUSTOM`` → Envoy ext_authz, built as Istio builds it.

The CUSTOM policies of a workload become one RBAC filter in shadow mode (nothing is enforced):
its rules, named ``istio-ext-authz-ns[..]-policy[..]-rule[i]``, put the matching rule's name in
dynamic metadata (``envoy.filters.http.rbac`` ``istio_ext_authz_shadow_effective_policy_id``).
The ext_authz filter after it runs only for requests whose metadata starts with
``istio-ext-authz``, so the authorizer is asked about exactly the requests the rules match.

The provider is MeshConfig's ``extensionProviders`` entry named by ``provider.name``
(``envoyExtAuthzHttp`` or ``envoyExtAuthzGrpc``); its ``service`` is looked up in the registry
(``<namespace>/<hostname>``, or a hostname found in one namespace only) and called through the
outbound cluster of ``port``. As Istio: one provider per workload; a provider that is missing,
unknown or not found in the registry makes every request to the workload denied (an RBAC DENY
policy ``default-deny-all-due-to-bad-CUSTOM-action``), logged. On TCP chains only a gRPC provider
applies (Envoy's network ext_authz); an HTTP provider leaves TCP traffic alone.
"""

from __future__ import annotations

import logging

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_authz
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_authz
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf.message import Message

from meshplane.pilot.generators.common import duration, outbound, pack
from meshplane.pilot.generators.security.authz_rbac import (
    HTTP_RBAC,
    NET_RBAC,
    TCP_STAT_PREFIX,
    rule_policies,
)
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import AuthorizationPolicy
from meshplane.shared.meshconfig_authz import ExtAuthzProvider

log = logging.getLogger("meshplane.pilot.security")

HTTP_EXT_AUTHZ = "envoy.filters.http.ext_authz"
NET_EXT_AUTHZ = "envoy.filters.network.ext_authz"
#: Istio's names: the policy-name prefix the ext_authz filter is enabled by, and the shadow prefix
MATCH_PREFIX = "istio-ext-authz"
SHADOW_STAT_PREFIX = "istio_ext_authz_"
EFFECTIVE_POLICY_ID = "shadow_effective_policy_id"
BAD_CUSTOM = "default-deny-all-due-to-bad-CUSTOM-action"
V3 = config_source_pb2.ApiVersion.V3


class ProviderError(ValueError):
    """The CUSTOM policies of a workload cannot be served by a provider."""


def _deny_all() -> rbac_pb2.RBAC:
    rbac = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    policy = rbac.policies[BAD_CUSTOM]
    policy.permissions.add(any=True)
    policy.principals.add(any=True)
    return rbac


def _provider(
    ctx: PushContext, customs: list[Config[AuthorizationPolicy]]
) -> tuple[ExtAuthzProvider, str, str]:
    """The provider, the service's hostname and its outbound cluster; raises ProviderError."""
    names = sorted({c.spec.provider.name or "" if c.spec.provider else "" for c in customs})
    if len(names) != 1 or not names[0]:
        raise ProviderError(f"only 1 provider can be used per workload, found: {names}")
    provider = ctx.mesh.ext_authz_provider(names[0])
    if provider is None:
        known = [n for n, _ in ctx.mesh.ext_authz_providers]
        raise ProviderError(f"available ext_authz providers are {known} but found {names[0]!r}")
    namespace, _, host = provider.service.rpartition("/")
    found = {s.namespace: s for s in ctx.services if s.hostname == host and namespace in ("", s.namespace)}
    if len(found) > 1:
        raise ProviderError(f"found {host} in namespaces {sorted(found)}: name it as <namespace>/<hostname>")
    if not found:
        raise ProviderError(f"could not find service {provider.service}:{provider.port} in the registry")
    return provider, host, outbound(provider.port, "", host)


def _enabled_by(filter_name: str) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=filter_name)
    m.path.add(key=SHADOW_STAT_PREFIX + EFFECTIVE_POLICY_ID)
    m.value.string_match.prefix = MATCH_PREFIX
    return m


def _headers(parent: Message, field: str, names: tuple[str, ...]) -> None:
    """``parent.field`` matches Istio's header-name patterns (``prefix*``, ``*suffix`` or exact,
    case-insensitive); left unset for no names (Envoy refuses an empty list)."""
    if not names:
        return
    patterns = getattr(parent, field).patterns
    for name in names:
        if name.startswith("*"):
            patterns.add(suffix=name[1:], ignore_case=True)
        elif name.endswith("*"):
            patterns.add(prefix=name[:-1], ignore_case=True)
        else:
            patterns.add(exact=name, ignore_case=True)


def _grpc_service(p: ExtAuthzProvider, cluster: str) -> grpc_service_pb2.GrpcService:
    service = grpc_service_pb2.GrpcService()
    service.envoy_grpc.cluster_name = cluster
    service.envoy_grpc.authority = cluster.replace("|", "_.")  # '|' is not valid in :authority
    service.timeout.CopyFrom(duration(p.timeout))
    return service


def http_ext_authz(p: ExtAuthzProvider, host: str, cluster: str) -> http_authz.ExtAuthz:
    out = http_authz.ExtAuthz(
        transport_api_version=V3,
        failure_mode_allow=p.fail_open,
        clear_route_cache=p.clear_route_cache,
        filter_enabled_metadata=_enabled_by(HTTP_RBAC),
    )
    if p.status_on_error is not None:
        out.status_on_error.code = http_status_pb2.StatusCode.ValueType(p.status_on_error)
    if p.body is not None:
        out.with_request_body.max_request_bytes = p.body.max_request_bytes
        out.with_request_body.allow_partial_message = p.body.allow_partial_message
        out.with_request_body.pack_as_bytes = p.body.pack_as_bytes
    if p.grpc:
        out.grpc_service.CopyFrom(_grpc_service(p, cluster))
        return out
    svc = out.http_service
    svc.server_uri.CopyFrom(
        http_uri_pb2.HttpUri(uri=f"http://{host}", cluster=cluster, timeout=duration(p.timeout))
    )
    svc.path_prefix = p.path_prefix
    _headers(out, "allowed_headers", p.headers_in_check)
    for key, value in p.include_additional_headers:
        svc.authorization_request.headers_to_add.append(base_pb2.HeaderValue(key=key, value=value))
    response = http_authz.AuthorizationResponse()
    _headers(response, "allowed_upstream_headers", p.headers_to_upstream_on_allow)
    _headers(response, "allowed_client_headers", p.headers_to_downstream_on_deny)
    _headers(response, "allowed_client_headers_on_success", p.headers_to_downstream_on_allow)
    if response.ListFields():
        svc.authorization_response.CopyFrom(response)
    return out


def _shadow(customs: list[Config[AuthorizationPolicy]], http: bool) -> rbac_pb2.RBAC:
    """The CUSTOM rules (DENY semantics: HTTP-only fields are dropped on TCP, as Istio does)."""
    rbac = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    for cfg in customs:
        for name, policy in rule_policies(cfg, http, deny=True, prefix=f"{MATCH_PREFIX}-").items():
            rbac.policies[name].CopyFrom(policy)
    return rbac


def _served(
    ctx: PushContext, customs: list[Config[AuthorizationPolicy]]
) -> tuple[ExtAuthzProvider, str, str] | None:
    """:func:`_provider`, or None (logged) when the CUSTOM policies cannot be served."""
    try:
        return _provider(ctx, customs)
    except ProviderError as exc:
        where = ", ".join(f"{c.namespace}/{c.name}" for c in customs)
        log.warning(
            "AuthorizationPolicy %s: CUSTOM action not served (%s); denying every request", where, exc
        )
        return None


def custom_http_filters(ctx: PushContext, customs: list[Config[AuthorizationPolicy]]) -> list[hcm.HttpFilter]:
    """The shadow RBAC and ext_authz HTTP filters for a workload's CUSTOM policies (or none)."""
    served = _served(ctx, customs) if customs else None
    if served is None:
        deny = [hcm.HttpFilter(name=HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC(rules=_deny_all())))]
        return deny if customs else []
    provider, host, cluster = served
    shadow = http_rbac_pb2.RBAC(
        shadow_rules=_shadow(customs, http=True), shadow_rules_stat_prefix=SHADOW_STAT_PREFIX
    )
    return [
        hcm.HttpFilter(name=HTTP_RBAC, typed_config=pack(shadow)),
        hcm.HttpFilter(name=HTTP_EXT_AUTHZ, typed_config=pack(http_ext_authz(provider, host, cluster))),
    ]


def custom_network_filters(ctx: PushContext, customs: list[Config[AuthorizationPolicy]]) -> list[lc.Filter]:
    """TCP chains: shadow RBAC and network ext_authz for a gRPC provider; nothing for HTTP ones."""
    served = _served(ctx, customs) if customs else None
    if served is None:
        deny = net_rbac_pb2.RBAC(rules=_deny_all(), stat_prefix=TCP_STAT_PREFIX)
        return [lc.Filter(name=NET_RBAC, typed_config=pack(deny))] if customs else []
    provider, _, cluster = served
    if not provider.grpc:
        return []
    shadow = net_rbac_pb2.RBAC(
        shadow_rules=_shadow(customs, http=False),
        stat_prefix=TCP_STAT_PREFIX,
        shadow_rules_stat_prefix=SHADOW_STAT_PREFIX,
    )
    authz = net_authz.ExtAuthz(
        stat_prefix=TCP_STAT_PREFIX,
        failure_mode_allow=provider.fail_open,
        transport_api_version=V3,
        grpc_service=_grpc_service(provider, cluster),
        filter_enabled_metadata=_enabled_by(NET_RBAC),
    )
    return [
        lc.Filter(name=NET_RBAC, typed_config=pack(shadow)),
        lc.Filter(name=NET_EXT_AUTHZ, typed_config=pack(authz)),
    ]
