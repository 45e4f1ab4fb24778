"""DestinationRule fields through a real Envoy: ``warmup`` (Envoy's slow start on a round-robin
cluster), outlierDetection ``splitExternalLocalOriginErrors``/``consecutiveLocalOriginFailures``
and maglev ``tableSize`` reach the clusters Envoy accepts, and requests are still answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


def _destination_rule(kit: Any) -> Any:
    return kit.vs_config(
        "DestinationRule",
        NS,
        "web",
        {
            "host": "web",
            "trafficPolicy": {
                "loadBalancer": {
                    "simple": "ROUND_ROBIN",
                    "warmup": {"duration": "45s", "minimumPercent": 20, "aggression": 1.5},
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 7,
                    "splitExternalLocalOriginErrors": True,
                    "consecutiveLocalOriginFailures": 3,
                },
            },
            "subsets": [
                {
                    "name": "hashed",
                    "labels": {"app": "web"},
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65537}}}},
                }
            ],
        },
    )


def _clusters(envoy: Any) -> dict[str, dict[str, Any]]:
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_active_clusters"))
    return {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}


def test_warmup_local_origin_outliers_and_maglev_table_in_envoy(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    kit.publish(
        nats_module.url,
        kit.http_service(HOST, NS, app_ip, port),
        [kit.bound_client_sidecar(NS, port, client_ip), _destination_rule(kit)],
    )
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)
    url = f"http://{client_ip}:{port}/"
    try:
        kit.wait_until(
            lambda: httpx.get(url, headers={"host": "web"}, timeout=5).status_code == 200,
            30,
            "the request through the slow-start cluster answered",
        )
        clusters = _clusters(envoy)
        plain = clusters[f"outbound|{port}||{HOST}"]
        assert plain.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
        assert plain["round_robin_lb_config"]["slow_start_config"] == {
            "slow_start_window": "45s",
            "aggression": {"default_value": 1.5, "runtime_key": "upstream.slow_start.aggression"},
            "min_weight_percent": {"value": 20.0},
        }
        outlier = plain["outlier_detection"]
        assert outlier["split_external_local_origin_errors"] is True
        assert outlier["consecutive_local_origin_failure"] == 3
        assert outlier["enforcing_consecutive_local_origin_failure"] == 100
        assert outlier["enforcing_local_origin_success_rate"] == 0
        hashed = clusters[f"outbound|{port}|hashed|{HOST}"]
        assert hashed["lb_policy"] == "MAGLEV"
        assert hashed["maglev_lb_config"] == {"table_size": "65537"}
        rejected = envoy.admin_get("/stats?filter=update_rejected").splitlines()
        assert rejected and all(line.endswith(": 0") for line in rejected), rejected
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
