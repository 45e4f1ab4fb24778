"""Pilot xDS benchmark: S services x N proxies on a real nats-server and a real Pilot process.

Pilot is pinned to CPU 0 and the load generators (``loadgen.py``, SotW or Delta streams that ACK
as Envoy does) to CPU 1 (with ``--share-cores``, to both CPUs at nice 10). Scenarios: all proxies
connecting, memory per proxy, a full push (a new service: every type to every proxy), one
endpoint change (EDS only), one new proxy connecting; Pilot's CPU
seconds and peak RSS. Prints one line per figure.

    python -m benchmarks.xds.run [--services 1000] [--proxies 2000] [--loadgens 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import service_key, workload_key
from meshplane.shared.natsserver import NatsServer, free_port

NS = "bench"
ROOT = Path(__file__).resolve().parents[2]


def service(i: int) -> registry_pb2.Service:
    port = registry_pb2.ServicePort(name="http", number=9080, protocol=registry_pb2.HTTP)
    return registry_pb2.Service(hostname=f"svc-{i}.{NS}.svc.cluster.local", namespace=NS, ports=[port])


def workload(i: int, j: int) -> registry_pb2.WorkloadInstance:
    return registry_pb2.WorkloadInstance(
        name=f"svc-{i}-{j}",
        namespace=NS,
        address=f"10.{100 + j}.{i // 256}.{i % 256}",
        labels={"app": f"svc-{i}"},
        services=[f"svc-{i}.{NS}.svc.cluster.local"],
        ports={"http": 9080},
    )


async def _bus(url: str, fn: Any) -> None:
    bus = await Bus.connect(BusOptions(url=url))
    try:
        await fn(Buckets(bus))
    finally:
        await bus.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Events:
    """Response arrival times reported by the load generators."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_type: dict[str, dict[int, tuple[float, str]]] = {}

    def reader(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                self.by_type.setdefault(ev["type"], {})[ev["stream"]] = (ev["t"], ev["version"])

    def count_after(self, type_: str, t0: float) -> int:
        with self.lock:
            return sum(1 for t, _ in self.by_type.get(type_, {}).values() if t >= t0)

    def last_after(self, type_: str, t0: float) -> float:
        with self.lock:
            return max((t for t, _ in self.by_type.get(type_, {}).values() if t >= t0), default=0.0)


def wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def _load_sched(cpus: set[int]) -> None:
    """Load generators stand in for Envoys on other machines: they get the CPU Pilot leaves."""
    os.sched_setaffinity(0, cpus)
    os.nice(10)


#: Each load generator receives a 0.4 MB route configuration per stream per push. glibc serves
#: allocations that big with mmap and returns them at once, so every message would be paged in
#: afresh (page faults were ~5 % of the load generators' CPU); these keep them in the heap.
LOADGEN_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(512 << 20),
    "MALLOC_TOP_PAD_": str(64 << 20),
}


def loadgen(pilot: str, streams: int, first: int, cpus: set[int], delta: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.xds.loadgen",
            "--pilot",
            pilot,
            "--streams",
            str(streams),
            "--first",
            str(first),
            *(["--delta"] if delta else []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **LOADGEN_ENV},
        preexec_fn=lambda: _load_sched(cpus),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--loadgens", type=int, default=4)
    parser.add_argument("--connect-rate", type=int, default=1000, help="PILOT_MAX_REQUESTS_PER_SECOND")
    parser.add_argument("--delta", action="store_true", help="Delta xDS streams (Istio's default since 1.22)")
    parser.add_argument(
        "--share-cores", action="store_true", help="load generators may use Pilot's core too, at nice 10"
    )
    parser.add_argument("--profile", metavar="FILE", help="run Pilot under cProfile, stats written to FILE")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pilot_cpu = cpus[0]
    # By default the load generators own the other core; with --share-cores they may also use
    # what Pilot leaves of its core (at nice 10, so Pilot keeps priority on it).
    load_cpus = set(cpus) if args.share_cores else {cpus[-1]}
    tmp = Path(tempfile.mkdtemp(prefix="xds-bench-"))
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
    nats.start()
    procs: list[subprocess.Popen[Any]] = []
    try:

        async def seed(b: Buckets) -> None:
            for i in range(args.services):
                await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
                for j in range(2):
                    await b.workloads.put(workload_key(NS, f"svc-{i}-{j}"), workload(i, j))

        t = time.monotonic()
        asyncio.run(_bus(nats.url, seed))
        took = time.monotonic() - t
        print(f"seeded {args.services} services / {2 * args.services} workloads in {took:.1f}s")
        grpc_port, http_port = free_port(), free_port()
        pilot_log = (tmp / "pilot.log").open("w")
        pilot = subprocess.Popen(
            [
                sys.executable,
                *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
                "-m",
                "meshplane.pilot",
                "--nats-url",
                nats.url,
                "--grpc-addr",
                f"127.0.0.1:{grpc_port}",
                "--http-addr",
                f"127.0.0.1:{http_port}",
                "--id",
                "bench",
            ],
            stdout=pilot_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PILOT_MAX_REQUESTS_PER_SECOND": str(args.connect_rate)},
            preexec_fn=lambda: os.sched_setaffinity(0, {pilot_cpu}),
        )
        procs.append(pilot)
        ready = wait_for(lambda: _ok(f"http://127.0.0.1:{http_port}/ready"), 120)
        assert ready, (tmp / "pilot.log").read_text()[-2000:]
        rss0, cpu0 = rss_mb(pilot.pid), cpu_seconds(pilot.pid)
        print(f"pilot ready: rss {rss0:.0f} MiB, cpu {cpu0:.2f}s (replay + first push context)")
        events = Events()
        t0 = time.time()
        per = args.proxies // args.loadgens
        for k in range(args.loadgens):
            p = loadgen(f"127.0.0.1:{grpc_port}", per, k * per, load_cpus, args.delta)
            procs.append(p)
            threading.Thread(target=events.reader, args=(p,), daemon=True).start()
        n = per * args.loadgens
        ok = wait_for(lambda: events.count_after("rds", t0) >= n and events.count_after("eds", t0) >= n, 600)
        print(
            f"connect {n} proxies: all four types received in {events.last_after('rds', t0) - t0:.2f}s "
            f"(complete={ok}); pilot cpu {cpu_seconds(pilot.pid) - cpu0:.1f}s"
        )
        time.sleep(7)  # let the storm settle (Pilot trims its heap after 5 s idle)
        rss1 = rss_mb(pilot.pid)
        print(f"memory: rss {rss1:.0f} MiB with {n} proxies; {(rss1 - rss0) / n * 1024:.0f} KiB per proxy")

        # A new service changes clusters, endpoints, listeners' routes. SotW resends every type;
        # Delta sends what changed: the new cluster, its endpoints and the route configuration
        # (its listeners are unchanged, so no LDS response is due).
        full_types = ("cds", "eds", "rds") if args.delta else ("cds", "eds", "lds", "rds")
        for label, change, types in (
            ("full push (new service, every changed type)", "service", full_types),
            ("one endpoint change (EDS only)", "endpoint", ("eds",)),
        ):
            times = []
            for rep in range(3):
                cpu_a = cpu_seconds(pilot.pid)
                gens = [g for g in procs[1:] if g.poll() is None]
                load_a = sum(cpu_seconds(g.pid) for g in gens)
                t1 = time.time()
                asyncio.run(_bus(nats.url, _change(change, args.services + rep)))
                done = wait_for(
                    lambda t1=t1, types=types: all(events.count_after(ty, t1) >= n for ty in types), 300
                )
                last = max(events.last_after(ty, t1) for ty in types)
                times.append(last - t1)
                print(
                    f"{label} #{rep + 1}: {last - t1:.2f}s to {n} proxies (complete={done}), "
                    f"pilot cpu {cpu_seconds(pilot.pid) - cpu_a:.2f}s, "
                    f"load generators cpu {sum(cpu_seconds(g.pid) for g in gens) - load_a:.2f}s"
                )
                time.sleep(1.5)
            print(f"{label}: median {sorted(times)[1]:.2f}s (includes 100 ms debounce)")

        t2 = time.time()
        p = loadgen(f"127.0.0.1:{grpc_port}", 1, 10_000_000, load_cpus, args.delta)
        procs.append(p)
        one = Events()
        threading.Thread(target=one.reader, args=(p,), daemon=True).start()
        wait_for(lambda: one.count_after("rds", t2) >= 1 and one.count_after("eds", t2) >= 1, 60)
        took = max(one.last_after("rds", t2), one.last_after("eds", t2)) - t2
        print(f"new proxy connecting: all four types in {took:.2f}s (includes the load generator's start-up)")
        peak = rss_mb(pilot.pid, "VmHWM")
        print(f"pilot totals: cpu {cpu_seconds(pilot.pid):.1f}s, peak rss {peak:.0f} MiB")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        nats.stop()
    return 0


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _change(kind: str, i: int) -> Any:
    async def go(b: Buckets) -> None:
        if kind == "service":
            await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
        else:
            await b.workloads.put(workload_key(NS, f"svc-5-extra-{i}"), workload(5, 2 + i % 50))

    return go


if __name__ == "__main__":
    sys.exit(main())
