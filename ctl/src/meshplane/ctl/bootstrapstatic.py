"""The bootstrap's static listeners: Istio's health port, and the xDS relay a VM's prober uses.

(Split from ``bootstrap`` so that module stays one concern: the node, ADS and SDS.)
"""

from __future__ import annotations

from typing import Any

Resources = list[dict[str, Any]]


class BootstrapError(ValueError):
    """An option value that cannot make a bootstrap; the message names the option."""


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def health_listener(port: int, admin_host: str, admin_port: int, clusters: Resources) -> Resources:
    """Istio's ``0.0.0.0:15021`` listener: ``/healthz/ready`` goes to admin ``/ready``, nothing else
    (its cluster is appended to ``clusters``)."""
    if not port:
        return []
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
    admin = socket_address(admin_host, admin_port)
    clusters.append(
        {
            "name": "health-admin",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "health-admin",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": admin}}]}],
            },
        }
    )
    return [listener]


def xds_relay_listener(path: str) -> Resources:
    """A Unix socket (mode 0600) whose connections Envoy passes to Pilot through its ``xds-grpc``
    cluster, so over Envoy's own mutual TLS with the workload certificate (as Istio's agent shares
    the proxy's connection): ``meshctl workload-probe`` reports a VM's health through it."""
    if not path:
        return []
    if not path.startswith("/"):
        raise BootstrapError(f"--xds-relay-socket: expected an absolute path, got {path!r}")
    tcp = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "xds-relay",
        "cluster": "xds-grpc",
    }
    chain = {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": tcp}]}
    return [
        {"name": "xds-relay", "address": {"pipe": {"path": path, "mode": 0o600}}, "filter_chains": [chain]}
    ]
