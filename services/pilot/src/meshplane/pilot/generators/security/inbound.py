"""The security side of a sidecar's inbound filter chains and of gateway listeners (hooks
``listeners`` calls).

For one inbound port: the PeerAuthentication mode picks the chains (``mtls.inbound_chains``);
every chain gets the workload's authentication and authorization filters — jwt_authn and RBAC
in front of the HTTP filters (Istio's order: authn, CUSTOM, AUDIT, DENY, ALLOW, then the rest),
network RBAC in front of tcp_proxy — and HTTP chains tell the app the caller's identity in
``x-forwarded-client-cert`` (SANITIZE_SET: a client-sent header is never passed through).
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.security.authz import http_authz_filters, network_authz_filters
from meshplane.pilot.generators.security.jwt_authn import jwt_filter
from meshplane.pilot.generators.security.mtls import add_tls_inspector, inbound_chains
from meshplane.pilot.generators.security.peer_authn import DISABLE, mtls_mode
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext

#: Config kinds whose change alters inbound listeners (and, for PeerAuthentication, endpoints).
KINDS = frozenset({"PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"})
HCM_NAME = "envoy.filters.network.http_connection_manager"


def _secure_hcm(chain: lc.FilterChain, filters: list[hcm.HttpFilter], xfcc: bool = True) -> None:
    for f in chain.filters:
        if f.name != HCM_NAME:
            continue
        mgr = hcm.HttpConnectionManager()
        f.typed_config.Unpack(mgr)
        current = list(mgr.http_filters)
        del mgr.http_filters[:]
        mgr.http_filters.extend([*filters, *current])
        if not xfcc:
            f.typed_config.CopyFrom(pack(mgr))
            continue
        mgr.forward_client_cert_details = hcm.HttpConnectionManager.SANITIZE_SET
        details = mgr.set_current_client_cert_details
        details.uri = True
        details.dns = True
        details.subject.value = True
        f.typed_config.CopyFrom(pack(mgr))


def _prepend(chain: lc.FilterChain, filters: list[lc.Filter]) -> None:
    rest = list(chain.filters)
    del chain.filters[:]
    chain.filters.extend([*filters, *rest])


def secure_inbound(
    ctx: PushContext,
    proxy: Proxy,
    port: int,
    listener: listener_pb2.Listener,
    base: Callable[[], lc.FilterChain],
) -> list[lc.FilterChain]:
    """The filter chains for one inbound port, built from ``base`` (a plaintext chain maker)."""
    mode = mtls_mode(ctx, proxy.namespace, proxy.labels, port)
    jwt = jwt_filter(ctx, proxy.namespace, proxy.labels)
    http_filters = ([jwt] if jwt is not None else []) + http_authz_filters(ctx, proxy.namespace, proxy.labels)
    net_filters = network_authz_filters(ctx, proxy.namespace, proxy.labels)

    def build(_mtls: bool) -> lc.FilterChain:
        chain = base()
        if any(f.name == HCM_NAME for f in chain.filters):
            _secure_hcm(chain, http_filters)
        elif net_filters:
            _prepend(chain, net_filters)
        return chain

    if mode != DISABLE:
        add_tls_inspector(listener)
    return inbound_chains(mode, build)


def secure_gateway(ctx: PushContext, proxy: Proxy, listeners: list[listener_pb2.Listener]) -> None:
    """Gateways: the RequestAuthentication and AuthorizationPolicy selecting the gateway's labels."""
    jwt = jwt_filter(ctx, proxy.namespace, proxy.labels, clear_route_cache=True)
    http_filters = ([jwt] if jwt is not None else []) + http_authz_filters(ctx, proxy.namespace, proxy.labels)
    net_filters = network_authz_filters(ctx, proxy.namespace, proxy.labels)
    for lis in listeners:
        for chain in lis.filter_chains:
            if any(f.name == HCM_NAME for f in chain.filters):
                if http_filters:
                    _secure_hcm(chain, http_filters, xfcc=False)
            elif net_filters:
                _prepend(chain, net_filters)
