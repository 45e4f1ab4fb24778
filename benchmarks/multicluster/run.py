"""Cross-cluster propagation: an endpoint added in cluster 2 reaching every proxy of cluster 1.

Two real nats-servers, each its own JetStream domain, joined by a TLS + nkey leafnode
(``meshplane.shared.testing.federation``): cluster 1 is the hub, cluster 2 its leaf. Each
cluster's registry holds the same S services (Istio's namespace sameness) with one workload per
service in that cluster; cluster 2's Galley record is kept fresh as Galley does (so Pilot does
not find it stale). Cluster 1's real Pilot runs with ``--cluster-id cluster1 --remote-cluster
cluster2`` and N ADS streams of cluster 1 (``benchmarks.xds.loadgen``, which request and ACK as
Envoy does) connect to it. Then, R times, a workload is added to cluster 2's registry and the
time until every stream has received an EDS response after it is measured: the write on
cluster 2's bus, the watch delivery across the leafnode, Pilot's debounce and push. Prints each
run, the median and a line to paste into BENCHMARKS.md.

    python -m benchmarks.multicluster.run [--services 1000] [--proxies 1000] [--loadgens 2] [--pushes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.xds.harness import NS, ROOT, Events, loadgen, ok, service, stop_all, wait_for, workload
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import service_key, workload_key
from meshplane.shared.bus.client import BUS_CREDENTIALS_ENV
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.federation import FederatedCluster, federated_clusters
from meshplane.shared.testing.federation import stop_all as stop_clusters

COMMAND = "python -m benchmarks.multicluster.run"


def _instance(i: int, j: int, cluster: str) -> Any:
    w = workload(i, j)
    w.name = f"svc-{i}-{cluster}-{j}"
    w.cluster_id = cluster
    return w


async def _seed(c: FederatedCluster, services: int, which: int) -> None:
    bus = await c.connect("admin", publish_deadline=30)
    try:
        b = Buckets(bus)
        for i in range(services):
            await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
            w = _instance(i, which, c.cluster_id)
            await b.workloads.put(workload_key(NS, w.name), w)
    finally:
        await bus.close()


class Cluster2Galley(threading.Thread):
    """Keeps a ``galley`` component record fresh on cluster 2's bus (what Pilot's staleness reads),
    and adds endpoints there on request."""

    def __init__(self, cluster: FederatedCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.bus: Any = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.bus = await self.cluster.connect("admin", publish_deadline=30)
        await ComponentAnnouncer(self.bus, "galley", {}, instance="bench").announce()

    def add_endpoint(self, i: int, n: int) -> None:
        async def put() -> None:
            w = _instance(i, 100 + n, "cluster2")
            await Buckets(self.bus).workloads.put(workload_key(NS, w.name), w)

        asyncio.run_coroutine_threadsafe(put(), self.loop).result(30)


def _pilot(hub: FederatedCluster, grpc: int, http: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "meshplane.pilot", "--nats-url", hub.server.url]
    argv += [
        "--grpc-addr",
        f"127.0.0.1:{grpc}",
        "--http-addr",
        f"127.0.0.1:{http}",
        "--debug-addr",
        "127.0.0.1:0",
    ]
    argv += ["--id", "bench", "--xds-plaintext", "--cluster-id", "cluster1", "--remote-cluster", "cluster2"]
    # as benchmarks/xds: the connect storm is not what is measured, so Pilot admits it quickly
    env = {
        **os.environ,
        BUS_CREDENTIALS_ENV: str(hub.pki.root / "pilot"),
        "PILOT_MAX_REQUESTS_PER_SECOND": "1000",
    }
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000, help="services per cluster")
    parser.add_argument("--proxies", type=int, default=1000, help="ADS streams of cluster 1")
    parser.add_argument("--loadgens", type=int, default=2)
    parser.add_argument("--pushes", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mc-bench-"))
    clusters = federated_clusters(tmp, "cluster1", "cluster2")
    hub, leaf = clusters
    procs: list[subprocess.Popen[Any]] = []
    try:
        t = time.monotonic()
        for which, c in enumerate(clusters):
            asyncio.run(_seed(c, args.services, which))
        print(f"seeded {args.services} services x 2 clusters in {time.monotonic() - t:.1f}s")
        galley2 = Cluster2Galley(leaf)
        galley2.start()
        galley2.ready.wait(30)
        grpc, http = free_port(), free_port()
        pilot = _pilot(hub, grpc, http, tmp / "pilot.log")
        procs.append(pilot)
        if not wait_for(lambda: ok(f"http://127.0.0.1:{http}/ready"), 120):
            print((tmp / "pilot.log").read_text()[-3000:], file=sys.stderr)
            return 1
        events = Events()
        cpus = set(os.sched_getaffinity(0))
        t0 = time.time()
        per = args.proxies // args.loadgens
        for k in range(args.loadgens):
            p = loadgen(f"127.0.0.1:{grpc}", per, k * per, cpus, False)
            procs.append(p)
            events.follow(p)
        n = per * args.loadgens
        if not wait_for(lambda: events.served_after(t0, n), 300):
            print("not every stream was served", file=sys.stderr)
            return 1
        print(f"{n} cluster-1 proxies connected in {events.last_after('rds', t0) - t0:.1f}s")
        time.sleep(3)  # the connect storm's pushes settle
        times = []
        for rep in range(args.pushes):
            t1 = time.time()
            galley2.add_endpoint(rep % args.services, rep)
            done = wait_for(functools.partial(events.served_after, t1, n, ("eds",)), 60)
            took = events.last_after("eds", t1) - t1
            times.append(took)
            print(
                f"endpoint added in cluster 2 #{rep + 1}: every cluster-1 proxy has it in {took:.2f}s "
                f"(complete={done})"
            )
            time.sleep(1.5)
        median = statistics.median(times)
        print(f"cross-cluster propagation: median {median:.2f}s (includes Pilot's 100 ms debounce)")
        print(
            f"| Cross-cluster propagation ({args.services} services per cluster, {n} cluster-1 ADS streams): "
            f"an endpoint added in cluster 2 reaches every cluster-1 proxy | {median:.2f} s median of "
            f"{args.pushes} | `{COMMAND} --services {args.services} --proxies {args.proxies}` |"
        )
    finally:
        stop_all(procs)
        stop_clusters(clusters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
