"""syncz rows and Envoy-style config dumps for connected proxies (pure functions of server state).

Every registered type gets its syncz columns (``<debug_name>_sent``, ...) and, when its generator
declares a ``dump`` shape, its section of the config dump, in push order.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from meshplane.pilot.generators import common
from meshplane.pilot.model.generator import Registry
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer


def status_of(sent: str, acked: str, nack: str) -> str:
    """istioctl's reading of a sent/acked pair."""
    if not sent:
        return "NOT SENT"
    if nack and sent == acked:
        return "NACKED"
    if sent == acked:
        return "SYNCED"
    if not acked:
        return "STALE (Never Acknowledged)"
    return "STALE"


def syncz_row(conn: Connection, generators: Registry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "proxy": conn.proxy.id,
        "node_id": conn.proxy.node_id,
        "proxy_type": conn.proxy.type.value,
        "proxy_version": conn.proxy.istio_version,
        "istio_version": conn.proxy.istio_version,
        # Envoy's build version from the node, and the gated features the proxy does not get
        "envoy_version": str(conn.proxy.version.envoy),
        "not_sent": sorted(conn.proxy.unsupported),
        "delta": conn.delta,
    }
    for gen in generators.ordered:
        key = gen.debug_name
        w = conn.watched.get(gen.type_url)
        sent = w.nonce_sent if w else ""
        acked = w.nonce_acked if w else ""
        row[f"{key}_sent"] = sent
        row[f"{key}_acked"] = acked
        row[f"{key}_status"] = status_of(sent, acked, w.last_nack if w else "")
        row[f"{key}_nack"] = w.last_nack if w else ""
        row[f"{key}_nacks"] = w.nacks if w else 0
        row[f"{key}_version_sent"] = w.version_sent if w else ""
        row[f"{key}_version_acked"] = w.version_acked if w else ""
    eds = conn.watched.get(common.ENDPOINT)  # istioctl's column, about EDS alone
    row["endpoint_percent"] = 100 if eds and eds.nonce_sent == eds.nonce_acked else 0
    return row


def syncz(server: DiscoveryServer) -> list[dict[str, Any]]:
    conns = sorted(server.connections.values(), key=lambda c: c.proxy.id)
    return [syncz_row(c, server.generators) for c in conns]


def config_dump(server: DiscoveryServer, conn: Connection) -> dict[str, Any]:
    """What this Pilot would send the proxy now, shaped like Envoy's /config_dump."""
    out: list[dict[str, Any]] = []
    version = server.version_info()
    dumps = [(g.dump, g) for g in server.generators.ordered if g.dump is not None]
    for dump, gen in sorted(dumps, key=lambda d: d[0].order):  # stable: ties in push order
        w = conn.watched.get(gen.type_url)
        names = None if w is None or w.wildcard else w.names
        resources = server.cache.generate(server.ctx, conn.proxy, gen.type_url, names)
        items = []
        for r in resources.values():
            body = json_format.MessageToDict(r.any)
            if dump.item_key == "active_state":
                items.append({"name": r.name, "active_state": {"version_info": version, "listener": body}})
            else:
                items.append({"version_info": version, dump.item_key: body})
        out.append({"@type": f"type.googleapis.com/envoy.admin.v3.{dump.dump_type}", dump.list_key: items})
    return {"configs": out}
