"""Envoy's Prometheus stats on Istio's stats port (15090 in pods; a free port here): a sidecar
and a gateway, each configured by Pilot, answer ``/stats/prometheus`` there, counting the
requests a client sends, and expose nothing else of the admin interface."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


def _sample(text: str, name: str, labels: str) -> float | None:
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_sidecar_and_gateway_serve_prometheus_stats_on_the_stats_port(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app_ip, gw_ip = base + "10", base + "20", base + "30"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    kit.publish(
        nats_module.url,
        kit.http_service(HOST, NS, app_ip, port),
        [kit.bound_client_sidecar(NS, port, client_ip)],
    )
    pilot = sidecar = gateway = None
    try:
        pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot-stats", xds=("--xds-plaintext",))
        pilots = [f"127.0.0.1:{pilot.grpc}"]
        opts = kit.proxy_options("sidecar", client_ip, "client-1", NS, {"app": "client"}, pilots, False)
        opts.stats_port = kit.free_port()
        sidecar = kit.start_envoy(tmp_path, "client", opts)
        gw_opts = kit.proxy_options(
            "router", gw_ip, "ingress-1", "istio-system", {"istio": "ingressgateway"}, pilots, False
        )
        gw_opts.stats_port = kit.free_port()
        gateway = kit.start_envoy(tmp_path, "gateway", gw_opts)

        url = f"http://{client_ip}:{port}/"
        kit.wait_until(
            lambda: httpx.get(url, headers={"host": "web"}, timeout=5).status_code == 200, 30, "traffic"
        )
        for _ in range(3):
            assert httpx.get(url, headers={"host": "web"}, timeout=5).status_code == 200
        stats = f"http://127.0.0.1:{opts.stats_port}/stats/prometheus"
        # Istio's stats tags: the whole cluster name is the cluster_name label
        cluster = f'cluster_name="outbound|{port}||{HOST}"'

        def counted() -> float | None:
            text = httpx.get(stats, timeout=5).text
            value = _sample(text, "envoy_cluster_upstream_rq_total", cluster)
            return value if value is not None and value >= 4 else None

        kit.wait_until(counted, 10, "the requests counted on the stats port")
        text = httpx.get(stats, timeout=5).text
        assert "# TYPE envoy_cluster_upstream_rq_total counter" in text
        # the gateway's stats port: it has taken Pilot's listeners
        gw_stats = f"http://127.0.0.1:{gw_opts.stats_port}/stats/prometheus"
        kit.wait_until(
            lambda: (
                (
                    _sample(
                        httpx.get(gw_stats, timeout=5).text, "envoy_listener_manager_lds_update_success", ""
                    )
                    or 0
                )
                >= 1
            ),
            20,
            "the gateway's LDS updates on its stats port",
        )
        # nothing else of the admin interface is reachable there
        for path in ("/config_dump", "/quitquitquit", "/stats"):
            assert httpx.get(f"http://127.0.0.1:{opts.stats_port}{path}", timeout=5).status_code == 404, path
    finally:
        kit.stop_all(gateway, sidecar, pilot)
        app.stop()
