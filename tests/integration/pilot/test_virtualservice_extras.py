"""VirtualService fields through a real Envoy: ``uriRegexRewrite`` (the upstream sees the rewritten
path), retry ``backoff`` and ``retryRemoteLocalities`` (in config_dump, and retries spaced by the
backoff), fault aborts by gRPC status name (the gRPC client gets that status), a match's ``name``
and ``statPrefix`` (route name and stats), ``directResponse`` bytes, ``derivePort:
FROM_REQUEST_PORT``, the deprecated ``mirrorPercent``, and a ``host`` header operation (Istio
rewrites the authority; Envoy refuses routes that modify ``host`` or pseudo-headers)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
#: the most the default backoff (25 ms base, full jitter, doubling) can wait over 4 retries
DEFAULT_BACKOFF_MAX_S = 0.025 + 0.05 + 0.1 + 0.2
RAW = b"raw\x00bytes\xff"


def _virtual_service(kit: Any) -> Any:
    dest = [{"destination": {"host": HOST}}]
    return kit.vs_config(
        "VirtualService",
        NS,
        "web",
        {
            "hosts": ["web"],
            "http": [
                {
                    "name": "regex-rewrite",
                    "match": [{"name": "old", "uri": {"prefix": "/old/"}, "statPrefix": "legacy"}],
                    "rewrite": {
                        "uriRegexRewrite": {"match": r"^/old/([a-z]+)/(\d+)$", "rewrite": r"/new/\2/\1"}
                    },
                    "route": dest,
                },
                {
                    "name": "backoff",
                    "match": [{"uri": {"prefix": "/fail-attempts/"}}],
                    "retries": {"attempts": 4, "backoff": "400ms", "retryRemoteLocalities": True},
                    "route": dest,
                },
                {
                    "name": "grpc-not-found",
                    "match": [{"uri": {"prefix": "/test.Missing/"}}],
                    "fault": {"abort": {"grpcStatus": "NOT_FOUND", "percentage": {"value": 100}}},
                    "route": dest,
                },
                {
                    "name": "grpc-unauthenticated",
                    "match": [{"uri": {"prefix": "/test.Locked/"}}],
                    "fault": {"abort": {"grpcStatus": "UNAUTHENTICATED", "percentage": {"value": 100}}},
                    "route": dest,
                },
                {
                    "name": "bytes",
                    "match": [{"uri": {"exact": "/bytes"}}],
                    "directResponse": {"status": 200, "body": {"bytes": base64.b64encode(RAW).decode()}},
                },
                {
                    "name": "moved",
                    "match": [{"uri": {"exact": "/moved"}}],
                    "redirect": {"uri": "/here", "authority": "other", "derivePort": "FROM_REQUEST_PORT"},
                },
                {
                    "name": "host-header",
                    "match": [{"uri": {"exact": "/host"}}],
                    "headers": {"request": {"set": {"host": "renamed.example", "x-set": "1"}}},
                    "route": dest,
                },
                {
                    "name": "mirrored",
                    "match": [{"uri": {"exact": "/mirrored"}}],
                    "mirror": {"host": HOST},
                    "mirrorPercent": 25,
                    "route": dest,
                },
                {"route": dest},
            ],
        },
    )


def _route(envoy: Any, name: str) -> dict[str, Any]:
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_route_configs"))
    for entry in dump["configs"]:
        for vh in entry["route_config"].get("virtual_hosts", []):
            for route in vh.get("routes", []):
                if route.get("name") == name:
                    return dict(route)
    raise KeyError(name)


def _grpc_status(target: str, method: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "web")]) as channel:
        call = channel.unary_unary(method)
        try:
            call(b"ping", timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]  # grpc's stubs leave code() untyped
    return grpc.StatusCode.OK


def test_regex_rewrite_retry_backoff_and_grpc_fault_status(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    kit.publish(
        nats_module.url,
        kit.http_service(HOST, NS, app_ip, port),
        [kit.bound_client_sidecar(NS, port, client_ip), _virtual_service(kit)],
    )
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)
    url = f"http://{client_ip}:{port}"
    try:
        resp = kit.wait_until(
            lambda: (
                (r := httpx.get(url + "/old/items/42", headers={"host": "web"}, timeout=5)).status_code == 200
                and r
            ),
            30,
            "the rewritten request answered",
        )
        assert resp.json()["path"] == "/new/42/items"
        assert _route(envoy, "regex-rewrite.old")["stat_prefix"] == "legacy"  # Istio: "<route>.<match>"
        legacy = envoy.admin_get("/stats?filter=route.legacy.upstream_rq_completed").split(": ")
        assert int(legacy[-1]) >= 1, legacy

        assert httpx.get(url + "/bytes", headers={"host": "web"}, timeout=5).content == RAW
        moved = httpx.get(url + "/moved", headers={"host": "web"}, timeout=5)
        assert (moved.status_code, moved.headers["location"]) == (301, f"http://other:{port}/here")
        seen = httpx.get(url + "/host", headers={"host": "web"}, timeout=5).json()
        assert (seen["headers"]["host"], seen["headers"]["x-set"]) == (
            "renamed.example",
            "1",
        )  # Istio: host rewrite
        mirror = _route(envoy, "mirrored")["route"]["request_mirror_policies"][0]["runtime_fraction"]
        assert mirror["default_value"] == {"numerator": 250000, "denominator": "MILLION"}

        route = _route(envoy, "backoff")["route"]["retry_policy"]
        assert route["retry_back_off"] == {"base_interval": "0.400s"}
        assert route["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
        assert route["retry_priority"]["typed_config"]["update_frequency"] == 2
        before = len(app.requests)
        resp = httpx.get(url + "/fail-attempts/4", headers={"host": "web"}, timeout=30)
        assert resp.status_code == 200
        attempts = app.requests[before:]
        assert [a["headers"]["x-envoy-attempt-count"] for a in attempts] == ["1", "2", "3", "4", "5"]
        # Jittered, so no lower bound per retry; but four 400 ms-based waits almost surely (p > 0.999)
        # exceed all four waits of Envoy's default 25 ms backoff could ever add up to.
        assert attempts[-1]["at"] - attempts[0]["at"] > DEFAULT_BACKOFF_MAX_S

        target = f"{client_ip}:{port}"
        assert _grpc_status(target, "/test.Missing/Call") == grpc.StatusCode.NOT_FOUND
        assert _grpc_status(target, "/test.Locked/Call") == grpc.StatusCode.UNAUTHENTICATED
        rejected = [line for line in envoy.admin_get("/stats?filter=update_rejected").splitlines()]
        assert rejected and all(line.endswith(": 0") for line in rejected), rejected
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
