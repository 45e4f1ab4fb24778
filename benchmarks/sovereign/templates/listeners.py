"""sovereign template (run by sovereign, in its own virtualenv): the outbound HTTP listener for port 9080.

Like Pilot's ``0.0.0.0_9080`` listener with route ``9080``: one virtual host per service routing
to its cluster. The route table is inline (no RDS round trip over REST); the listener is not
bound (as Pilot's per-port outbound listeners behind ``virtualOutbound``).
"""

from __future__ import annotations

from typing import Any

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def call(services: list[dict[str, Any]], **_: Any) -> list[dict[str, Any]]:
    hosts = [
        {
            "name": f"{svc['host']}:{svc['port']}",
            "domains": [svc["host"], f"{svc['host']}:{svc['port']}"],
            "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": f"outbound|{svc['port']}||{svc['host']}"}}
            ],
        }
        for svc in services
    ]
    hcm = {
        "@type": HCM,
        "stat_prefix": "outbound_0.0.0.0_9080",
        "route_config": {"name": "9080", "virtual_hosts": hosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return [
        {
            "name": "0.0.0.0_9080",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 9080}},
            "bind_to_port": False,
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
            ],
        }
    ]
