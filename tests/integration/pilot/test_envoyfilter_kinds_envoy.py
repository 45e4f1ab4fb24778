"""EnvoyFilter route, virtual host, route configuration, filter chain and listener filter patches,
proxy matches and Istio's order, through a real Envoy; GATEWAY-context patches through a real
gateway; and a patch whose result Envoy would reject is skipped and counted by Pilot while the rest
of the config reaches Envoy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
ROOT = "istio-system"
HOST = f"web.{NS}.svc.cluster.local"
INSPECTOR = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"


def _ef(kit: Any, name: str, patches: list[dict[str, Any]], ns: str = NS, **spec: Any) -> Any:
    cfg = kit.vs_config("EnvoyFilter", ns, name, {"configPatches": patches, **spec})
    cfg.version = "v1alpha3"
    return cfg


def _rc(
    apply_to: str, op: str, value: Any, match: dict[str, Any] | None = None, **proxy: Any
) -> dict[str, Any]:
    m: dict[str, Any] = {"context": "SIDECAR_OUTBOUND", "routeConfiguration": match or {}}
    if proxy:
        m["proxy"] = proxy
    return {"applyTo": apply_to, "match": m, "patch": {"operation": op, "value": value}}


def _direct(name: str, prefix: str, body: str, status: int = 200) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"prefix": prefix},
        "direct_response": {"status": status, "body": {"inline_string": body}},
    }


def _header(name: str) -> dict[str, Any]:
    return {"response_headers_to_add": [{"header": {"key": name, "value": "yes"}}]}


def _rejected(envoy: Any) -> dict[str, int]:
    """Every ``*update_rejected`` stat of the Envoy that is not 0."""
    out = {}
    for line in envoy.admin_get("/stats?filter=update_rejected$").splitlines():
        key, _, value = line.partition(": ")
        if value.strip().isdigit() and int(value) != 0:
            out[key] = int(value)
    return out


def _dump(envoy: Any, resource: str) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = json.loads(envoy.admin_get(f"/config_dump?resource={resource}"))[
        "configs"
    ]
    return configs


def _start(kit: Any, nats_url: str, tmp_path: Path, configs: list[Any]) -> tuple[Any, Any, Any, Any, str]:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    bus = kit.publish(
        nats_url,
        kit.http_service(HOST, NS, app_ip, port),
        [kit.bound_client_sidecar(NS, port, client_ip), *configs],
    )
    pilot = kit.start_pilot(nats_url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)
    return app, bus, pilot, envoy, f"http://{client_ip}:{port}"


def test_route_vhost_chain_and_listener_filter_patches_with_proxy_matches_and_order(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    at_default = {"vhost": {"route": {"name": "default"}}}
    patches = [
        _rc("HTTP_ROUTE", "INSERT_BEFORE", _direct("teapot", "/teapot", "short and stout", 418), at_default),
        _rc("HTTP_ROUTE", "INSERT_BEFORE", _direct("order-ns", "/order", "namespace"), at_default),
        _rc(
            "VIRTUAL_HOST",
            "MERGE",
            {"request_headers_to_add": [{"header": {"key": "x-vh", "value": "merged"}}]},
        ),
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-rc")),
        # ISTIO_VERSION is the Istio release meshplane emulates (1.32.0); CLUSTER_ID is Kubernetes
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-version-hit"), proxyVersion="^1\\.32\\."),
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-version-miss"), proxyVersion="^1\\.2"),
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-meta-hit"), metadata={"CLUSTER_ID": "Kubernetes"}),
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-meta-miss"), metadata={"CLUSTER_ID": "east"}),
        {
            "applyTo": "FILTER_CHAIN",
            "match": {
                "context": "SIDECAR_OUTBOUND",
                "listener": {
                    "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}
                },
            },
            "patch": {"operation": "MERGE", "value": {"transport_socket_connect_timeout": "4s"}},
        },
        {
            "applyTo": "LISTENER_FILTER",
            "match": {"context": "SIDECAR_OUTBOUND"},
            "patch": {
                "operation": "INSERT_FIRST",
                "value": {
                    "name": "envoy.filters.listener.http_inspector",
                    "typed_config": {"@type": f"type.googleapis.com/{INSPECTOR}"},
                },
            },
        },
    ]
    shop = _ef(kit, "routes", patches, workloadSelector={"labels": {"app": "client"}})
    # same priority: the root-namespace filter runs first, so its route comes first
    root = _ef(
        kit,
        "root",
        [_rc("HTTP_ROUTE", "INSERT_BEFORE", _direct("order-root", "/order", "root"), at_default)],
        ns=ROOT,
    )
    app, bus, pilot, envoy, url = _start(kit, nats_module.url, tmp_path, [shop, root])
    try:
        teapot = kit.wait_until(
            lambda: (
                (r := httpx.get(url + "/teapot", headers={"host": "web"}, timeout=5)).status_code == 418 and r
            ),
            30,
            "the inserted route",
        )
        assert teapot.text == "short and stout"
        resp = httpx.get(url + "/", headers={"host": "web"}, timeout=5)
        assert (
            resp.status_code == 200 and resp.json()["name"] == "web"
        )  # the default route still reaches the app
        assert resp.json()["headers"].get("x-vh") == "merged"
        present = {
            h
            for h in ("x-rc", "x-version-hit", "x-version-miss", "x-meta-hit", "x-meta-miss")
            if h in resp.headers
        }
        assert present == {"x-rc", "x-version-hit", "x-meta-hit"}
        assert httpx.get(url + "/order", headers={"host": "web"}, timeout=5).text == "root"

        first = _ef(
            kit,
            "first",
            [_rc("HTTP_ROUTE", "INSERT_BEFORE", _direct("order-first", "/order", "priority"), at_default)],
            priority=-5,
        )
        bus.put_configs(first)  # a lower priority runs before the root namespace's filter
        kit.wait_until(
            lambda: httpx.get(url + "/order", headers={"host": "web"}, timeout=5).text == "priority",
            20,
            "priority order",
        )

        listeners = [c["active_state"]["listener"] for c in _dump(envoy, "dynamic_listeners")]
        http = [x for x in listeners if x["name"] != "virtualOutbound"]
        assert http and all(
            x["listener_filters"][0]["name"] == "envoy.filters.listener.http_inspector" for x in http
        )
        assert all(
            c.get("transport_socket_connect_timeout") == "4s" for x in http for c in x["filter_chains"]
        )
        assert _rejected(envoy) == {}
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()


def _status(pilot: Any, name: str, result: str) -> float:
    total = 0.0
    for line in httpx.get(pilot.url + "/metrics", timeout=5).text.splitlines():
        if (
            line.startswith("pilot_envoy_filter_status{")
            and f'name="{name}"' in line
            and f'result="{result}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_patch_envoy_would_reject_is_skipped_and_counted_the_rest_reaches_envoy(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    cluster = {"context": "SIDECAR_OUTBOUND", "cluster": {"service": HOST}}
    patches = [
        # connect_timeout must be > 0 and a virtual host needs a domain: Envoy would NACK both
        {
            "applyTo": "CLUSTER",
            "match": cluster,
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "-1s"}},
        },
        _rc("VIRTUAL_HOST", "ADD", {"name": "no-domains"}),
        {
            "applyTo": "CLUSTER",
            "match": cluster,
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "6s"}},
        },
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-good")),
    ]
    bad = _ef(kit, "mixed", patches)
    app, bus, pilot, envoy, url = _start(kit, nats_module.url, tmp_path, [bad])
    try:
        resp = kit.wait_until(
            lambda: (
                (r := httpx.get(url + "/", headers={"host": "web"}, timeout=5)).headers.get("x-good") and r
            ),
            30,
            "the good patch",
        )
        assert resp.status_code == 200 and resp.json()["name"] == "web"
        clusters = [c["cluster"] for c in _dump(envoy, "dynamic_active_clusters")]
        web = next(c for c in clusters if c["name"].endswith(f"||{HOST}"))
        assert web["connect_timeout"] == "6s"
        routes = [c["route_config"] for c in _dump(envoy, "dynamic_route_configs")]
        assert all(v["name"] != "no-domains" for r in routes for v in r.get("virtual_hosts", []))
        assert _rejected(envoy) == {}
        assert _status(pilot, f"{NS}/mixed", "error") >= 2
        assert _status(pilot, f"{NS}/mixed", "applied") >= 1
        rejects = [
            line
            for line in httpx.get(pilot.url + "/metrics", timeout=5).text.splitlines()
            if line.startswith("pilot_total_xds_rejects")
        ]
        assert all(line.endswith(" 0.0") for line in rejects if not line.startswith("#")), rejects
        assert "Envoy would reject the result" in pilot.log.read_text()
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()


def test_gateway_context_patches_reach_the_gateway_and_sidecar_ones_do_not(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    gw_ip, app_ip = base + "30", base + "40"
    port = kit.free_port_on([gw_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    server = {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], "bind": gw_ip}
    gateway = kit.vs_config(
        "Gateway", ROOT, "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}
    )
    vs = kit.vs_config(
        "VirtualService",
        NS,
        "web",
        {"hosts": ["*"], "gateways": [f"{ROOT}/gw"], "http": [{"route": [{"destination": {"host": HOST}}]}]},
    )
    lua = {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {
                "inline_string": 'function envoy_on_response(h) h:headers():add("x-gw-lua", "yes") end'
            },
        },
    }
    router = {
        "name": "envoy.filters.network.http_connection_manager",
        "subFilter": {"name": "envoy.filters.http.router"},
    }
    gw_route = _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-gw-route"), {"portNumber": port})
    gw_route["match"]["context"] = "GATEWAY"
    patches = [
        {
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": "GATEWAY",
                "listener": {"portNumber": port, "filterChain": {"filter": router}},
            },
            "patch": {"operation": "INSERT_BEFORE", "value": lua},
        },
        gw_route,
        _rc("ROUTE_CONFIGURATION", "MERGE", _header("x-sidecar-only")),  # SIDECAR_OUTBOUND
    ]
    ef = _ef(kit, "gateway", patches, ns=ROOT, workloadSelector={"labels": {"istio": "ingressgateway"}})
    kit.publish(nats_module.url, kit.http_service(HOST, NS, app_ip, port), [gateway, vs, ef])
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "router", gw_ip, "ingress", ROOT, {"istio": "ingressgateway"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "gateway", opts)
    url = f"http://{gw_ip}:{port}/"
    try:
        resp = kit.wait_until(
            lambda: (
                (r := httpx.get(url, headers={"host": "shop.example.com"}, timeout=5)).status_code == 200
                and r
            ),
            30,
            "the gateway route",
        )
        assert resp.json()["name"] == "web"
        assert resp.headers.get("x-gw-lua") == "yes"
        assert resp.headers.get("x-gw-route") == "yes"
        assert "x-sidecar-only" not in resp.headers
        assert _rejected(envoy) == {}
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
