"""Two Pilot replicas on one bus: killing the one an Envoy uses loses no request, and the Envoy
reconnects to the other replica (bootstrap lists both) and converges on new config from it."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_killing_a_pilot_replica_loses_no_request(
    delta: bool, kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    app = kit.App("web", "v1", app_ip, port)
    bus = kit.BusWriter(nats_module.url)
    bus.put_registry(*kit.http_service(HOST, NS, app_ip, port))
    bus.put_configs(kit.bound_client_sidecar(NS, port, client_ip))
    pilots = [kit.start_pilot(nats_module.url, tmp_path, f"replica-{i}") for i in (1, 2)]
    opts = kit.proxy_options(
        "sidecar",
        client_ip,
        "client-1",
        NS,
        {"app": "client"},
        [f"127.0.0.1:{p.grpc}" for p in pilots],
        delta,
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)
    stop = threading.Event()
    statuses: list[int | str] = []

    def traffic() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    statuses.append(
                        client.get(f"http://{client_ip}:{port}/", headers={"host": "web"}).status_code
                    )
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)
                time.sleep(0.01)

    def holder() -> Any:
        for p in pilots:
            if p.proc.poll() is None and any(r["proxy"] == f"client-1.{NS}" for r in p.get("/debug/syncz")):
                return p
        return None

    thread = threading.Thread(target=traffic)
    try:
        kit.wait_until(
            lambda: httpx.get(f"http://{client_ip}:{port}/", headers={"host": "web"}).status_code == 200,
            30,
            "traffic through the sidecar",
        )
        thread.start()
        first = kit.wait_until(holder, 10, "the replica holding the Envoy")
        kit.wait_until(lambda: len(statuses) > 20, 10, "traffic before the kill")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        other = next(p for p in pilots if p is not first)
        kit.wait_until(lambda: holder() is other, 20, "Envoy reconnected to the other replica")
        bus.put_configs(
            kit.vs_config(
                "VirtualService",
                NS,
                "web",
                {
                    "hosts": ["web"],
                    "http": [
                        {"match": [{"uri": {"exact": "/moved"}}], "directResponse": {"status": 299}},
                        {"route": [{"destination": {"host": "web"}}]},
                    ],
                },
            )
        )
        kit.wait_until(
            lambda: httpx.get(f"http://{client_ip}:{port}/moved", headers={"host": "web"}).status_code == 299,
            10,
            "new config from the surviving replica",
        )
        row = next(r for r in other.get("/debug/syncz") if r["proxy"] == f"client-1.{NS}")
        assert row["route_status"] == "SYNCED" and row["cluster_status"] == "SYNCED"
        after = len(statuses)
        kit.wait_until(lambda: len(statuses) >= after + 20, 10, "traffic after the config change")
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(10)
        envoy.stop()
        for p in pilots:
            p.stop()
        app.stop()
    assert len(statuses) > 50
    assert all(s == 200 for s in statuses), [s for s in statuses if s != 200][:10]
