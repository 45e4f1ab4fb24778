"""Pilot cold start and hot restart with 2000 proxies, against the design card (< 30 s, < 5 s).

A real nats-server holds the registry (1000 services with 2, then with 10 workload instances
each: 2000 and 10,000 workloads); 2000 Delta ADS streams from the xDS benchmark's load
generators (``benchmarks/xds/loadgen.py``) stand in for the proxies, and reopen a failed stream
with Envoy's backoff (jittered exponential, 500 ms to 30 s). Pilot is pinned to CPU 0; the load
generators use both CPUs at nice 10 (the xDS benchmark's ``--share-cores``).

- **cold start**: the proxies are already trying to connect (no Pilot listening); from the start
  of a fresh ``meshplane-pilot`` process until every proxy has received all four types.
- **hot restart**: from SIGKILL of a Pilot serving all 2000 proxies, restarted at once on the same
  ports (as a supervisor would, without its back-off), until every proxy has received all four
  types again.

Each is repeated ``--runs`` times (fresh load generators and Pilot per run); one line per run
and the medians are printed.

    python -m benchmarks.pilotrestart.run [--runs 3] [--workloads-per-service 2 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchmarks.xds.harness import (
    Events,
    cpu_seconds,
    format_resets,
    loadgen,
    ok,
    seed,
    start_pilot,
    stop_all,
    wait_for,
)
from meshplane.shared.natsserver import NatsServer, free_port


@dataclass
class Bench:
    nats_url: str
    proxies: int
    loadgens: int
    connect_rate: int
    log: TextIO
    timeout: float
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    pilot_cpu: int = field(default_factory=lambda: sorted(os.sched_getaffinity(0))[0])

    def pilot(self) -> subprocess.Popen[bytes]:
        return start_pilot(
            self.nats_url, self.grpc_port, self.http_port, self.pilot_cpu, self.log, self.connect_rate
        )

    def ready(self) -> bool:
        return ok(f"http://127.0.0.1:{self.http_port}/ready")

    def run(self) -> tuple[Start, Start, str]:
        """One cold start and one hot restart, and the stream resets seen by status."""
        events = Events()
        gens: list[subprocess.Popen[Any]] = []
        pilot: subprocess.Popen[bytes] | None = None
        per = self.proxies // self.loadgens
        n = per * self.loadgens
        try:
            t_gens = time.time()
            cpus = set(os.sched_getaffinity(0))
            for k in range(self.loadgens):
                gens.append(loadgen(f"127.0.0.1:{self.grpc_port}", per, k * per, cpus, True))
                events.follow(gens[-1])
            # every load generator is up and failing to connect (nothing listens yet)
            started = wait_for(lambda: len({s // per for _, s, _ in events.resets}) == self.loadgens, 60)
            assert started, "the load generators did not start"
            t0 = time.time()
            pilot = self.pilot()
            cold = self._served(pilot, events, t0, n, "cold start")
            t1 = time.time()
            pilot.send_signal(signal.SIGKILL)
            pilot.wait()
            pilot = self.pilot()
            hot = self._served(pilot, events, t1, n, "hot restart")
            return cold, hot, format_resets(events.resets_by_code(t_gens))
        finally:
            stop_all([*([pilot] if pilot else []), *gens])

    def _served(self, pilot: subprocess.Popen[bytes], events: Events, t0: float, n: int, what: str) -> Start:
        ready = Start()

        def check() -> bool:
            if not ready.ready and self.ready():
                ready.ready, ready.ready_cpu = time.time() - t0, cpu_seconds(pilot.pid)
            return events.served_after(t0, n)

        assert wait_for(check, self.timeout), f"{what}: not every proxy was served in {self.timeout:.0f}s"
        ready.served_cpu = cpu_seconds(pilot.pid)
        ready.served = max(events.last_after(t, t0) for t in ("cds", "eds", "lds", "rds")) - t0
        return ready


@dataclass
class Start:
    """Seconds from the start (spawn or SIGKILL) to Pilot ready and to every proxy served, and
    Pilot's CPU seconds at each."""

    ready: float = 0.0
    served: float = 0.0
    ready_cpu: float = 0.0
    served_cpu: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.served:.2f}s (ready {self.ready:.2f}s, Pilot CPU {self.ready_cpu:.1f}s to ready, "
            f"{self.served_cpu:.1f}s to served)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--workloads-per-service", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--loadgens", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connect-rate", type=int, default=1000, help="PILOT_MAX_REQUESTS_PER_SECOND")
    parser.add_argument("--timeout", type=float, default=300, help="give up on one start after this long")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pilot-restart-bench-"))
    print(f"logs in {tmp}; Pilot on CPU 0, load generators on all CPUs at nice 10")
    for per_service in args.workloads_per_service:
        nats = NatsServer(store_dir=tmp / f"nats-{per_service}", log_file=tmp / f"nats-{per_service}.log")
        nats.start()
        log = (tmp / f"pilot-{per_service}.log").open("w")
        try:
            seed(nats.url, args.services, per_service)
            label = f"{args.services * per_service} workloads ({args.services} services x {per_service})"
            bench = Bench(nats.url, args.proxies, args.loadgens, args.connect_rate, log, args.timeout)
            colds, hots = [], []
            for run in range(1, args.runs + 1):
                cold, hot, resets = bench.run()
                colds.append(cold.served)
                hots.append(hot.served)
                print(f"{label}, {args.proxies} proxies, run {run}: cold start {cold}", flush=True)
                print(f"{label}, {args.proxies} proxies, run {run}: hot restart {hot}", flush=True)
                print(f"  stream resets by status: {resets}", flush=True)
            print(
                f"{label}, {args.proxies} proxies: median cold start {statistics.median(colds):.2f}s "
                f"(target < 30 s), median hot restart {statistics.median(hots):.2f}s (target < 5 s)",
                flush=True,
            )
        finally:
            log.close()
            nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
