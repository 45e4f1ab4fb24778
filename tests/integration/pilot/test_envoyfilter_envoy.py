"""EnvoyFilter patches through a real Envoy: a Lua filter inserted before the router adds a header
the client sees, a cluster MERGE changes the connect timeout in config_dump, and a REMOVE patch
(higher priority) drops the Lua filter again. Envoy rejects none of the updates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
HCM = "envoy.filters.network.http_connection_manager"
LUA_NAME = "envoy.filters.http.lua"
LUA = {
    "name": LUA_NAME,
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {
            "inline_string": 'function envoy_on_response(h) h:headers():add("x-lua", "inserted") end'
        },
    },
}


def _filter_match(sub: str) -> dict[str, Any]:
    return {
        "context": "SIDECAR_OUTBOUND",
        "listener": {"filterChain": {"filter": {"name": HCM, "subFilter": {"name": sub}}}},
    }


def _envoy_filter(kit: Any, name: str, spec: dict[str, Any]) -> Any:
    cfg = kit.vs_config("EnvoyFilter", NS, name, spec)
    cfg.version = "v1alpha3"
    return cfg


def _connect_timeout(envoy: Any, cluster: str) -> str:
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_active_clusters"))
    for entry in dump["configs"]:
        if entry["cluster"]["name"] == cluster:
            return str(entry["cluster"].get("connect_timeout", ""))
    return ""


def test_envoyfilter_lua_cluster_merge_and_remove(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    lua = _envoy_filter(
        kit,
        "lua",
        {
            "workloadSelector": {"labels": {"app": "client"}},
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": _filter_match("envoy.filters.http.router"),
                    "patch": {"operation": "INSERT_BEFORE", "value": LUA},
                },
                {
                    "applyTo": "CLUSTER",
                    "match": {
                        "context": "SIDECAR_OUTBOUND",
                        "cluster": {"service": HOST, "portNumber": port},
                    },
                    "patch": {"operation": "MERGE", "value": {"connect_timeout": "7s"}},
                },
            ],
        },
    )
    bus = kit.publish(
        nats_module.url,
        kit.http_service(HOST, NS, app_ip, port),
        [kit.bound_client_sidecar(NS, port, client_ip), lua],
    )
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)
    url = f"http://{client_ip}:{port}/"

    def lua_header() -> str | None:
        resp = httpx.get(url, headers={"host": "web"}, timeout=5)
        return resp.headers.get("x-lua", "") if resp.status_code == 200 else None

    try:
        assert kit.wait_until(lua_header, 30, "the Lua filter's header") == "inserted"
        assert _connect_timeout(envoy, f"outbound|{port}||{HOST}") == "7s"
        remove = _envoy_filter(
            kit,
            "remove-lua",
            {
                "priority": 10,
                "configPatches": [
                    {
                        "applyTo": "HTTP_FILTER",
                        "match": _filter_match(LUA_NAME),
                        "patch": {"operation": "REMOVE"},
                    }
                ],
            },
        )
        kit.assert_valid(remove)
        bus.put_configs(remove)
        kit.wait_until(lambda: lua_header() == "", 20, "the Lua filter removed")
        assert _connect_timeout(envoy, f"outbound|{port}||{HOST}") == "7s"
        for stat in ("listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected"):
            assert envoy.stat(stat) == 0, stat
        metrics = httpx.get(pilot.url + "/metrics", timeout=5).text
        assert 'pilot_xds_pushes{type="cds"}' in metrics
        rejects = [line for line in metrics.splitlines() if line.startswith("pilot_total_xds_rejects")]
        assert all(line.endswith(" 0.0") for line in rejects), rejects
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
