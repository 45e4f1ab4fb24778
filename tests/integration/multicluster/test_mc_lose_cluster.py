"""Losing a cluster under load, and its return: one ``meshctl up --cluster`` per cluster.

Cluster 1 and cluster 2 run as two ``meshctl up`` processes sharing one state dir (as two
machines would share the hub's address and federation credentials). A load generator (its own
thread) sends requests through cluster 1's ingress gateway, answered by helloworld in both
clusters. Every process of cluster 2 is SIGKILLed. The example's outlier detection ejects
cluster 2's east-west gateway after its first failure and the route retries elsewhere
(``previous_hosts``), so once the ejection happened cluster 1's clients lose no request; cluster
2's endpoints then leave cluster 1's EDS when its registry goes stale (Pilot's
``--remote-stale-after``, 30 s). A new ``meshctl up --cluster cluster2`` brings it back and its
endpoints serve again. The timings are printed (``-s`` shows them; README records a run).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from meshplane.ctl.localmesh.testing import UpRun, copy_multicluster, running
from tests.integration.multicluster.mc_kit import (
    REPO,
    admins,
    bind_of,
    both_clusters,
    cluster_of,
    endpoints,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


class Load(threading.Thread):
    """Requests one after another through the gateway; each recorded as (time, cluster or error)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.records: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                try:
                    answer = cluster_of(c.get(self.url))
                except httpx.HTTPError as exc:
                    answer = f"<{type(exc).__name__}>"
                self.records.append((time.monotonic(), answer))

    def since(self, t: float) -> list[str]:
        return [a for at, a in list(self.records) if at > t]


def _kill_cluster(run: UpRun) -> None:
    """SIGKILL ``meshctl up`` and every process group it started (its table, restarts included)."""
    groups = run.current_pids()
    os.kill(run.child.pid, signal.SIGKILL)
    for pgid in groups.values():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run.proc.wait(10)

    def gone() -> bool:
        alive = []
        for pgid in groups.values():
            try:
                os.killpg(pgid, 0)
                alive.append(pgid)
            except ProcessLookupError:
                pass
        return not alive

    wait_until(gone, 10, "every process of cluster 2 gone")


def test_losing_cluster2_under_load_costs_no_request_after_failover_and_it_rejoins(tmp_path: Path) -> None:
    config, port = copy_multicluster(REPO / "examples", tmp_path)
    state, gateway = tmp_path / "state", f"http://127.0.0.1:{port}/"
    gateway2 = f"{bind_of(config / 'cluster2' / 'gateways.yaml', 'bind')}:15443"
    one = ("--cluster", "cluster1")
    two = ("--cluster", "cluster2")
    with running(config, state, tmp_path, gateway, 240, args=one, log="up-cluster1.log"):
        ingress = admins(state, "cluster1")["istio-ingressgateway.istio-system"]
        with running(config, state, tmp_path, gateway, 240, args=two, log="up-cluster2.log") as cluster2:
            wait_until(lambda: both_clusters(gateway), 90, "answers from both clusters")
            load = Load(gateway)
            load.start()
            wait_until(lambda: {"cluster1", "cluster2"} <= set(load.since(0)), 30, "load answered by both")
            killed = time.monotonic()
            _kill_cluster(cluster2)

        def ejected() -> bool:
            text = httpx.get(f"http://{ingress}/clusters", timeout=10).text
            return any(gateway2 in line and "failed_outlier_check" in line for line in text.splitlines())

        try:
            wait_until(
                lambda: ejected() or gateway2 not in endpoints(ingress), 60, "cluster 2's gateway ejected"
            )
            failed_over = time.monotonic()
            wait_until(lambda: gateway2 not in endpoints(ingress), 90, "cluster 2's endpoints to leave EDS")
            left_eds = time.monotonic()
            wait_until(lambda: len(load.since(left_eds)) >= 200, 60, "200 requests after cluster 2 left EDS")
        finally:
            load.stop.set()
            load.join(15)
        during = [a for at, a in load.records if killed < at <= failed_over]
        after = load.since(failed_over)
        lost = [a for a in during if a.startswith("<")]
        print(
            f"\nlosing cluster 2: outlier ejection {failed_over - killed:.2f}s after SIGKILL "
            f"({len(lost)} of {len(during)} requests lost meanwhile), endpoints out of EDS after "
            f"{left_eds - killed:.1f}s (stale registry); {len(after)} requests since ejection, "
            f"{sum(a.startswith('<') for a in after)} lost"
        )
        assert set(after) == {"cluster1"}, sorted(set(after))

        # cluster 2 returns: it rejoins and its endpoints serve again
        with running(config, state, tmp_path, gateway, 240, args=two, log="up-cluster2-again.log"):
            back = time.monotonic()
            wait_until(lambda: both_clusters(gateway), 120, "cluster 2 answering again through cluster 1")
            print(f"cluster 2 serves again {time.monotonic() - back:.1f}s after its meshctl up was ready")
            assert gateway2 in endpoints(ingress)
