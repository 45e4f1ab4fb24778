"""What the Pilot benchmarks share: the bus seed, a Pilot process, load generators and the events
they report (responses and stream resets, see ``loadgen.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

from benchmarks.xds.tls import TlsFiles
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import service_key, workload_key

NS = "bench"
ROOT = Path(__file__).resolve().parents[2]
TYPES = ("cds", "eds", "lds", "rds")


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


def seed(url: str, services: int, per_service: int = 2) -> None:
    """``services`` services with ``per_service`` workload instances each."""

    async def go(b: Buckets) -> None:
        for i in range(services):
            await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
            for j in range(per_service):
                await b.workloads.put(workload_key(NS, f"svc-{i}-{j}"), workload(i, j))

    asyncio.run(_bus(url, go))


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Page faults the process has taken without I/O (pages it touched afresh)."""
    return int(_stat(pid)[7])


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Events:
    """Response arrival times and stream resets reported by the load generators."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_type: dict[str, dict[int, tuple[float, str]]] = {}
        #: (time, stream, gRPC status code name) of every stream reset
        self.resets: list[tuple[float, int, str]] = []
        #: (time, type, gRPC message bytes) of every response
        self.sizes: list[tuple[float, str, int]] = []

    def reader(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                if "reset" in ev:
                    self.resets.append((ev["t"], ev["stream"], ev["reset"]))
                else:
                    self.by_type.setdefault(ev["type"], {})[ev["stream"]] = (ev["t"], ev["version"])
                    self.sizes.append((ev["t"], ev["type"], ev.get("bytes", 0)))

    def follow(self, proc: subprocess.Popen[str]) -> None:
        threading.Thread(target=self.reader, args=(proc,), daemon=True).start()

    def count_after(self, type_: str, t0: float) -> int:
        with self.lock:
            return sum(1 for t, _ in self.by_type.get(type_, {}).values() if t >= t0)

    def last_after(self, type_: str, t0: float) -> float:
        with self.lock:
            return max((t for t, _ in self.by_type.get(type_, {}).values() if t >= t0), default=0.0)

    def served_after(self, t0: float, n: int, types: tuple[str, ...] = TYPES) -> bool:
        """Whether ``n`` streams each received every one of ``types`` since ``t0``."""
        return all(self.count_after(ty, t0) >= n for ty in types)

    def bytes_after(self, t0: float) -> Counter[str]:
        """gRPC message bytes received since ``t0``, by type (TLS and HTTP/2 framing not counted)."""
        with self.lock:
            out: Counter[str] = Counter()
            for t, type_, size in self.sizes:
                if t >= t0:
                    out[type_] += size
            return out

    def resets_by_code(self, t0: float = 0.0, t1: float = float("inf")) -> Counter[str]:
        with self.lock:
            return Counter(code for t, _, code in self.resets if t0 <= t < t1)


def format_resets(counts: Counter[str]) -> str:
    """``INTERNAL 0, CANCELLED 0, ...``: always names INTERNAL and CANCELLED, then what else came."""
    codes = ["INTERNAL", "CANCELLED", *sorted(c for c in counts if c not in ("INTERNAL", "CANCELLED"))]
    return ", ".join(f"{c} {counts.get(c, 0)}" for c in codes)


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
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
#: One arena: gRPC's threads otherwise allocate in arenas of their own, whose heaps glibc unmaps
#: once they are empty, whatever the trim threshold. Every other push then paged up to ≈ 1.3 GB
#: in afresh (the load generators' system time alternated between pushes); with one arena about
#: half as much, still alternating (BENCHMARKS.md, 2026-12-06).
LOADGEN_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(512 << 20),
    "MALLOC_TOP_PAD_": str(64 << 20),
    "MALLOC_ARENA_MAX": "1",
}


def loadgen(
    pilot: str, streams: int, first: int, cpus: set[int], delta: bool, tls: TlsFiles | None = None
) -> subprocess.Popen[str]:
    """``tls``: connect with mutual TLS (the ``bench`` client certificate), else plaintext."""
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
            *(["--tls-dir", str(tls.directory)] if tls else []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **LOADGEN_ENV},
        preexec_fn=lambda: _load_sched(cpus),
    )


def start_pilot(
    nats_url: str,
    grpc_port: int,
    http_port: int,
    cpu: int,
    log: TextIO,
    connect_rate: int,
    profile: str | None = None,
    tls: TlsFiles | None = None,
    profile_signalled: str | None = None,
) -> subprocess.Popen[bytes]:
    """A ``meshplane-pilot`` process pinned to ``cpu``, its output appended to ``log``; ADS over
    mutual TLS with ``tls``'s certificates, else plaintext. ``profile``: cProfile over the whole
    run; ``profile_signalled``: only between SIGUSR1 and SIGUSR2 (``benchmarks.xds.profiled``)."""
    return subprocess.Popen(
        [
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
            "-m",
            *(["benchmarks.xds.profiled", profile_signalled] if profile_signalled else ["meshplane.pilot"]),
            "--nats-url",
            nats_url,
            "--grpc-addr",
            f"127.0.0.1:{grpc_port}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
            "--debug-addr",
            "127.0.0.1:0",
            "--id",
            "bench",
            *(tls.pilot_args() if tls else ["--xds-plaintext"]),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PILOT_MAX_REQUESTS_PER_SECOND": str(connect_rate)},
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(procs: list[subprocess.Popen[Any]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
