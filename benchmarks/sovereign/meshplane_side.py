"""The meshplane side: a real nats-server seeded as ``benchmarks/xds`` does, a real Pilot, ADS bootstraps.

S services ``svc-<i>.bench.svc.cluster.local`` (port 9080, one workload each) are written to the
bus with the xds benchmark's helpers; Pilot turns them into the clusters
``outbound|9080||svc-<i>...`` (EDS). Each Envoy gets the ``meshctl bootstrap`` sidecar bootstrap
(SotW ADS over gRPC). A DestinationRule turns TLS off for the benchmark's hosts (see
``PLAINTEXT_DR``). The change is one more service with its workload.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.sovereign.fleet import pinned
from benchmarks.xds.run import NS, _bus, _ok, service, workload
from meshplane.ctl.bootstrap import BootstrapOptions, default_node_id, render_bootstrap
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess

NET = "networking.istio.io"
# Plaintext like the sovereign side. Without it every outbound cluster carries Istio's auto-mTLS
# socket, whose SDS secrets only a node agent serves: the clusters would warm until Envoy's 15 s
# initial_fetch_timeout, which measures a missing node agent, not the control plane.
PLAINTEXT_DR = config_pb2.ConfigResource(
    kind="DestinationRule",
    group=NET,
    version="v1",
    namespace=NS,
    name="plaintext",
    resource_version="1",
    generation=1,
    spec_json=json.dumps(
        {"host": f"*.{NS}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    ),
)


class MeshplaneSide:
    name = "meshplane"

    def __init__(self, workdir: Path, services: int) -> None:
        self.workdir = workdir
        self.services = services
        self.nats = NatsServer(store_dir=workdir / "nats", log_file=workdir / "nats.log")
        self.pilot: ChildProcess | None = None
        self.grpc_port = 0
        self.http_port = 0

    @property
    def settings(self) -> str:
        return "Pilot: SotW ADS over gRPC, default debounce (PILOT_DEBOUNCE_AFTER 100 ms); clusters are EDS"

    def start(self, cpu: int | None, timeout: float = 180.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        asyncio.run(_bus(self.nats.url, self._seed))
        self.grpc_port, self.http_port = free_port(), free_port()
        args = [sys.executable, "-m", "meshplane.pilot", "--nats-url", self.nats.url, "--xds-plaintext"]
        args += ["--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--http-addr", f"127.0.0.1:{self.http_port}"]
        args += ["--debug-addr", "127.0.0.1:0"]
        self.pilot = ChildProcess([*args, "--id", "sovbench"], self.workdir / "pilot.log", name="pilot")
        with pinned(cpu):
            self.pilot.start()
        self.pilot.wait_ready(lambda: _ok(f"http://127.0.0.1:{self.http_port}/ready"), timeout, "ready")

    async def _seed(self, b: Buckets) -> None:
        await b.config.put(config_key(NET, "DestinationRule", NS, "plaintext"), PLAINTEXT_DR)
        for i in range(self.services):
            await self._put(b, i)

    async def _put(self, b: Buckets, i: int) -> None:
        await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
        await b.workloads.put(workload_key(NS, f"svc-{i}-0"), workload(i, 0))

    def bootstrap(self, k: int, admin_port: int) -> dict[str, Any]:
        opts = BootstrapOptions(
            pilots=[f"127.0.0.1:{self.grpc_port}"], admin=f"127.0.0.1:{admin_port}", namespace=NS
        )
        opts.node_id = default_node_id(opts, f"envoy-{k}")
        return render_bootstrap(opts)

    def add_cluster(self) -> None:
        """One new service (and its endpoint), so one new cluster on every Envoy."""

        async def put(b: Buckets) -> None:
            await self._put(b, self.services)

        asyncio.run(_bus(self.nats.url, put))

    def pid(self) -> int:
        assert self.pilot is not None
        return self.pilot.pid

    def stop(self) -> None:
        pilot, self.pilot = self.pilot, None
        if pilot is not None:
            pilot.stop(10)
        self.nats.stop()
