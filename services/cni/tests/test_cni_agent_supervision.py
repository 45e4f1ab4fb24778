"""The CNI agent's loops run supervised: a pods-file watch whose directory vanishes fails loudly (logged
with its traceback, counted on /metrics, listed as down in /healthz) and is restarted with backoff
until the directory is back, when the agent serves the new pods again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.cni.testing import agent, pod_object, wait_until
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.scrape import scrape

pytestmark = pytest.mark.timeout(60)

FAILURES = 'meshplane_cni_task_failures_total{task="pods-file"}'


def test_a_dead_pods_file_watch_is_counted_restarted_and_follows_the_new_directory(tmp_path: Path) -> None:
    port = free_port()
    with agent(
        tmp_path, [pod_object("cart", "shop")], "--no-install", f"--monitoring-addr=127.0.0.1:{port}"
    ) as a:
        transport = httpx.HTTPTransport(uds=str(a.run_dir / "agent.sock"))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=10) as client:

            def health() -> dict[str, Any]:
                doc: dict[str, Any] = client.get("/healthz").json()
                return doc

            def known(ns: str, name: str) -> bool:
                return client.get(f"/v1/pods/{ns}/{name}").status_code == 200

            wait_until(lambda: known("shop", "cart"), 30, "the first pod served")
            assert health()["tasks_down"] == []
            shutil.rmtree(a.pods_file.parent)
            wait_until(
                lambda: scrape(port, "meshplane_cni_").get(FAILURES, 0) >= 1, 30, "the failure counted"
            )
            assert "task pods-file failed" in a.log.read_text()
            assert "Traceback" in a.log.read_text()
            wait_until(
                lambda: health()["tasks_down"] == ["pods-file"], 30, "/healthz to list the watch as down"
            )

            a.pods_file.parent.mkdir()
            a.write_pods([pod_object("checkout", "shop")])
            wait_until(lambda: known("shop", "checkout"), 30, "the pod from the re-created directory")
            wait_until(lambda: health()["tasks_down"] == [], 30, "the watch up again")
            # still followed after the restart: a later edit is picked up
            a.write_pods([pod_object("checkout", "shop"), pod_object("payments", "shop")])
            wait_until(lambda: known("shop", "payments"), 30, "an edit after the restart")
        assert a.proc.poll() is None
        assert a.stop() == 0
