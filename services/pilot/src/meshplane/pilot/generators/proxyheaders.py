"""ProxyConfig ``proxyHeaders`` on every HTTP connection manager Pilot generates for a proxy
(Istio's ``GetProxyHeaders``; the proxy sends its ProxyConfig as node metadata ``PROXY_CONFIG``):

* ``server.value``: the Server header Envoy writes on responses; ``server.disabled``: the
  upstream's Server header passes through (``PASS_THROUGH``);
* ``requestId.disabled``: Envoy generates no ``x-request-id``;
* ``envoyDebugHeaders.disabled``: the router adds no ``x-envoy-*`` headers
  (``suppress_envoy_headers``).

The other ``proxyHeaders`` fields are not applied (named in validation and injection warnings).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.filters import HCM
from meshplane.pilot.model.proxy import Proxy
from meshplane.shared.proxyconfig import ProxyHeaders

ROUTER = "envoy.filters.http.router"


def apply_proxy_headers(proxy: Proxy, listeners: Iterable[listener_pb2.Listener]) -> None:
    headers = proxy.proxy_headers
    if headers.is_default:
        return  # nothing to unpack (the common case, kept cheap)
    for lis in listeners:
        chains = list(lis.filter_chains)
        if lis.HasField("default_filter_chain"):
            chains.append(lis.default_filter_chain)
        for chain in chains:
            for flt in chain.filters:
                manager = hcm.HttpConnectionManager()
                if flt.name == HCM and flt.typed_config.Unpack(manager):
                    _apply(manager, headers)
                    flt.typed_config.CopyFrom(pack(manager))


def _apply(manager: hcm.HttpConnectionManager, headers: ProxyHeaders) -> None:
    if headers.server_name:
        manager.server_name = headers.server_name
    if headers.server_pass_through:
        manager.server_header_transformation = hcm.HttpConnectionManager.PASS_THROUGH
    if not headers.generate_request_id:
        manager.generate_request_id.value = False
    if headers.suppress_envoy_headers:
        for http_filter in manager.http_filters:
            router = router_pb2.Router()
            if http_filter.name == ROUTER and http_filter.typed_config.Unpack(router):
                router.suppress_envoy_headers = True
                http_filter.typed_config.CopyFrom(pack(router))
