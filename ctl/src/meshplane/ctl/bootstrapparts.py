"""Parts of ``meshctl bootstrap``'s output that stand on their own: the error its options raise,
socket addresses, Istio's health (15021) and stats (15090) listeners and its stats tags."""

from __future__ import annotations

from typing import Any


class BootstrapError(ValueError):
    """An option value that cannot make a bootstrap; the message names the option."""


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


_ADDRESS = r"(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"
#: The stats tags of Istio's bootstrap (Envoy's defaults replaced), so Prometheus labels are
#: Istio's: ``cluster_name`` runs through ``.<ns>.svc.cluster.local``, keeping
#: ``outbound|80||web.shop.svc.cluster.local`` one value (Envoy's own tag stops at the first dot).
STATS_TAGS: tuple[tuple[str, str], ...] = (
    ("cluster_name", r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    ("http_conn_manager_listener_prefix", r"^listener(?=\.).*?\.http\." + _ADDRESS),
    ("http_conn_manager_prefix", r"^http\." + _ADDRESS),
    ("listener_address", r"^listener\." + _ADDRESS),
)


def admin_listeners(
    health_port: int, stats_port: int, admin_host: str, admin_port: int, clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    """The health (15021) and stats (15090) listeners asked for (their admin clusters appended to
    ``clusters``), as ``static_resources`` entries."""
    health = health_listener(health_port, admin_host, admin_port, clusters)
    stats = stats_listener(stats_port, admin_host, admin_port, clusters)
    listeners = [*health.get("listeners", []), *stats.get("listeners", [])]
    return {"listeners": listeners} if listeners else {}


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
    clusters.append(_admin_cluster("health-admin", admin_host, admin_port))
    return {"listeners": [_one_route_listener(f"health-{port}", port, "health", route)]}


def stats_listener(
    port: int, admin_host: str, admin_port: int, clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    """Istio's ``0.0.0.0:15090`` ``prometheus_stats`` listener: ``/stats/prometheus`` goes to the
    admin's, nothing else (its cluster ``prometheus_stats`` is appended to ``clusters``)."""
    if not port:
        return {}
    if not 0 < port < 65536:
        raise BootstrapError(f"--stats-port: expected 1..65535, got {port}")
    route = {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}
    clusters.append(_admin_cluster("prometheus_stats", admin_host, admin_port))
    return {"listeners": [_one_route_listener(f"prometheus_stats-{port}", port, "stats", route)]}


def _admin_cluster(name: str, admin_host: str, admin_port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": socket_address(admin_host, admin_port)}}]}
            ],
        },
    }


def _one_route_listener(name: str, port: int, prefix: str, route: dict[str, Any]) -> dict[str, Any]:
    """A ``0.0.0.0:port`` listener whose one route is ``route``."""
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": prefix,
        "route_config": {"virtual_hosts": [{"name": prefix, "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": name,
        "address": socket_address("0.0.0.0", port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }
