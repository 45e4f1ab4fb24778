"""Parts of ``meshctl bootstrap``'s output that stand on their own: the error its options raise,
socket addresses, and Istio's health listener."""

from __future__ import annotations

from typing import Any


class BootstrapError(ValueError):
    """An option value that cannot make a bootstrap; the message names the option."""


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def health_listener(
    port: int, admin_host: str, admin_port: int, clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    """Istio's ``0.0.0.0:15021`` listener: ``/healthz/ready`` goes to admin ``/ready``, nothing else
    (its cluster is appended to ``clusters``)."""
    if not port:
        return {}
    if not 0 < port < 65536:
        raise BootstrapError(f"--health-port: expected 1..65535, got {port}")
    route = {
        "match": {"path": "/healthz/ready"},
        "route": {"cluster": "health-admin", "prefix_rewrite": "/ready", "timeout": "3s"},
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "health",
        "route_config": {"virtual_hosts": [{"name": "health", "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    listener = {
        "name": f"health-{port}",
        "address": socket_address("0.0.0.0", port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }
    clusters.append(
        {
            "name": "health-admin",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "health-admin",
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": socket_address(admin_host, admin_port)}}]}
                ],
            },
        }
    )
    return {"listeners": [listener]}
