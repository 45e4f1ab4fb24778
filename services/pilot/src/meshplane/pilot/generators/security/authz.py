"""The authorization filters of a workload in Istio's order: CUSTOM first (a shadow RBAC marking
the requests its rules match, then ext_authz for those: ``ext_authz``), then the RBAC filters of
AUDIT, DENY and ALLOW (``authz_rbac``)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from meshplane.pilot.generators.security.authz_rbac import action_of, http_rbac_filters, network_rbac_filters
from meshplane.pilot.generators.security.ext_authz import custom_http_filters, custom_network_filters
from meshplane.pilot.generators.security.selection import applicable
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import AuthorizationPolicy


def http_authz_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[hcm.HttpFilter]:
    policies = applicable(ctx, AuthorizationPolicy, namespace, labels)
    custom = [p for p in policies if action_of(p) == "CUSTOM"]
    return custom_http_filters(ctx, custom) + http_rbac_filters(policies)


def network_authz_filters(ctx: PushContext, namespace: str, labels: dict[str, str]) -> list[lc.Filter]:
    policies = applicable(ctx, AuthorizationPolicy, namespace, labels)
    custom = [p for p in policies if action_of(p) == "CUSTOM"]
    return custom_network_filters(ctx, custom) + network_rbac_filters(policies)
