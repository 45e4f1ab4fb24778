"""ProxyConfig ``proxyHeaders`` in a real Envoy (issue 15 item 4): a sidecar whose bootstrap
carries them (node metadata ``PROXY_CONFIG``, as ``meshctl bootstrap`` writes from the injected
``PROXY_CONFIG``) gets HTTP connection managers from Pilot that write the configured Server
header, generate no ``x-request-id`` and add no ``x-envoy-*`` headers; what the client and the
app see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
PROXY_CONFIG = {
    "proxyHeaders": {
        "server": {"value": "meshplane-test"},
        "requestId": {"disabled": True},
        "envoyDebugHeaders": {"disabled": True},
    }
}


def test_proxy_headers_reach_the_client_and_the_app(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    pilot = envoy = None
    try:
        kit.publish(
            nats_module.url,
            kit.http_service(HOST, NS, app_ip, port),
            [kit.bound_client_sidecar(NS, port, client_ip)],
        )
        pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot-ph")
        opts = kit.proxy_options(
            "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
        )
        opts.proxy_config = PROXY_CONFIG
        envoy = kit.start_envoy(tmp_path, "client", opts)

        def get() -> httpx.Response:
            return httpx.get(f"http://{client_ip}:{port}/hello", headers={"host": "web"}, timeout=5)

        response = kit.wait_until(
            lambda: (r := get()).status_code == 200 and r, 30, "traffic through the sidecar"
        )
        assert response.headers["server"] == "meshplane-test"  # Envoy's own would be "envoy"
        # the router's x-envoy-upstream-service-time is gone (and every other x-envoy-* header)
        assert not [h for h in response.headers if h.startswith("x-envoy-")], response.headers
        seen = app.requests[-1]["headers"]
        assert "x-request-id" not in seen, seen  # Envoy generates one unless told not to
        # x-envoy-attempt-count is the virtual host's (proxyHeaders.attemptCount, not applied)
        assert {h for h in seen if h.startswith("x-envoy-")} <= {"x-envoy-attempt-count"}, seen
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
