"""meshplane-cni-agent as a process with --monitoring-addr: plugin events are counted on /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from meshplane.cni.testing import agent, wait_until
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.scrape import scrape

pytestmark = pytest.mark.timeout(60)


def _scrape(port: int) -> dict[str, float]:
    return scrape(port, "meshplane_cni_")


def test_agent_metrics_count_plugin_add_and_del_by_result(tmp_path: Path) -> None:
    port = free_port()
    with agent(tmp_path, [], "--no-install", f"--monitoring-addr=127.0.0.1:{port}") as a:
        transport = httpx.HTTPTransport(uds=str(a.run_dir / "agent.sock"))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as client:
            for report in (
                {"type": "ADD", "namespace": "shop", "name": "cart", "captured": True},
                {"type": "ADD", "namespace": "kube-system", "name": "dns", "captured": False},
                {"type": "DEL", "namespace": "shop", "name": "cart"},
            ):
                assert client.post("/v1/events", json=report).status_code == 204
        captured = 'meshplane_cni_plugin_events_total{command="ADD",result="captured"}'
        skipped = 'meshplane_cni_plugin_events_total{command="ADD",result="skipped"}'
        deleted = 'meshplane_cni_plugin_events_total{command="DEL",result="deleted"}'
        values = wait_until(lambda: (v := _scrape(port)).get(deleted) and v, 30, "the DEL counted")
        assert values[captured] == 1
        assert values[skipped] == 1
        assert values[deleted] == 1
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert (ready.status_code, ready.text) == (200, "ready\n")  # every task up
        assert a.stop() == 0
