"""sovereign template (run by sovereign, in its own virtualenv): one STATIC cluster per service.

Endpoints are inline (``load_assignment``): over REST, sovereign's EDS would cost one POST per
cluster per refresh (see ENVOY-NOTES.md). Names match Pilot's ``outbound|<port>||<host>``.
"""

from __future__ import annotations

from typing import Any


def call(services: list[dict[str, Any]], **_: Any) -> list[dict[str, Any]]:
    out = []
    for svc in services:
        name = f"outbound|{svc['port']}||{svc['host']}"
        address = {"socket_address": {"address": svc["address"], "port_value": svc["port"]}}
        out.append(
            {
                "name": name,
                "type": "STATIC",
                "connect_timeout": "10s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                },
            }
        )
    return out
