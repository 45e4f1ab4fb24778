"""Pilot xDS benchmark: S services x N proxies on a real nats-server and a real Pilot process.

Pilot is pinned to CPU 0 and the load generators (``loadgen.py``, SotW or Delta streams that ACK
as Envoy does) to CPU 1 (with ``--share-cores``, to both CPUs at nice 10). Scenarios: all proxies
connecting, memory per proxy, a full push (a new service: every type to every proxy), one
endpoint change (EDS only), one new proxy connecting; Pilot's CPU
seconds and peak RSS. Prints one line per figure.

    python -m benchmarks.xds.run [--services 1000] [--proxies 2000] [--loadgens 4] [--tls]
                                 [--pushes 3] [--profile-pushes FILE]

``--tls`` serves ADS over mutual TLS (``benchmarks.xds.tls``) and runs the bus with TLS and nkeys
(``meshplane.shared.bus.pki``), for the cost of TLS on the push.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.xds.harness import (
    NS,
    Events,
    _bus,
    cpu_seconds,
    format_resets,
    loadgen,
    minor_faults,
    ok,
    rss_mb,
    seed,
    service,
    start_pilot,
    stop_all,
    wait_for,
    workload,
)
from benchmarks.xds.tls import write_tls_files
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import service_key, workload_key
from meshplane.shared.bus.client import BUS_DIR_ENV, BUS_IDENTITY_ENV
from meshplane.shared.bus.identities import ADMIN
from meshplane.shared.bus.pki import BusPki
from meshplane.shared.natsserver import NatsServer, free_port

__all__ = ["NS", "_bus", "_ok", "service", "workload"]  # used by benchmarks/sovereign
_ok = ok


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
    parser.add_argument(
        "--profile-pushes", metavar="FILE", help="cProfile Pilot during the full pushes only, stats to FILE"
    )
    parser.add_argument("--pushes", type=int, default=3, help="pushes of each kind (full, endpoint)")
    parser.add_argument(
        "--tls", action="store_true", help="ADS over mutual TLS (client certificates), as proxies use it"
    )
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pilot_cpu = cpus[0]
    # By default the load generators own the other core; with --share-cores they may also use
    # what Pilot leaves of its core (at nice 10, so Pilot keeps priority on it).
    load_cpus = set(cpus) if args.share_cores else {cpus[-1]}
    tmp = Path(tempfile.mkdtemp(prefix="xds-bench-"))
    if args.tls:
        # the bus as deployed too: TLS and one nkey per component (Pilot's own; the seeder is admin)
        BusPki.create(tmp / "bus", admin=True)
        os.environ[BUS_DIR_ENV] = str(tmp / "bus")
        os.environ[BUS_IDENTITY_ENV] = ADMIN
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
    print(f"bus: {'TLS and nkeys' if nats.secured else 'plaintext'}")
    nats.start()
    procs: list[subprocess.Popen[Any]] = []
    try:
        t = time.monotonic()
        seed(nats.url, args.services)
        took = time.monotonic() - t
        print(f"seeded {args.services} services / {2 * args.services} workloads in {took:.1f}s")
        grpc_port, http_port = free_port(), free_port()
        pilot_log = (tmp / "pilot.log").open("w")
        rate = args.connect_rate
        tls = write_tls_files(tmp / "tls") if args.tls else None
        print(f"ADS: {'mutual TLS' if tls else 'plaintext'}")
        pilot = start_pilot(
            nats.url, grpc_port, http_port, pilot_cpu, pilot_log, rate, args.profile, tls, args.profile_pushes
        )
        procs.append(pilot)
        ready = wait_for(lambda: ok(f"http://127.0.0.1:{http_port}/ready"), 120)
        assert ready, (tmp / "pilot.log").read_text()[-2000:]
        rss0, cpu0 = rss_mb(pilot.pid), cpu_seconds(pilot.pid)
        print(f"pilot ready: rss {rss0:.0f} MiB, cpu {cpu0:.2f}s (replay + first push context)")
        events = Events()
        t0 = time.time()
        per = args.proxies // args.loadgens
        for k in range(args.loadgens):
            p = loadgen(f"127.0.0.1:{grpc_port}", per, k * per, load_cpus, args.delta, tls)
            procs.append(p)
            events.follow(p)
        n = per * args.loadgens
        done = wait_for(lambda: events.served_after(t0, n), 600)
        connected = time.time()
        print(
            f"connect {n} proxies: all four types received in {events.last_after('rds', t0) - t0:.2f}s "
            f"(complete={done}); pilot cpu {cpu_seconds(pilot.pid) - cpu0:.1f}s"
        )
        storm = format_resets(events.resets_by_code(t0))
        print(f"stream resets during the connect storm, by status: {storm}")
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
            times: list[float] = []
            pilot_cpus: list[float] = []
            sizes: list[int] = []
            profiling = args.profile_pushes and change == "service"
            if profiling:
                pilot.send_signal(signal.SIGUSR1)
            for rep in range(args.pushes):
                cpu_a = cpu_seconds(pilot.pid)
                gens = [g for g in procs[1:] if g.poll() is None]
                load_a = sum(cpu_seconds(g.pid) for g in gens)
                faults_a = sum(minor_faults(g.pid) for g in gens)
                t1 = time.time()
                asyncio.run(_bus(nats.url, _change(change, args.services + rep)))
                done = wait_for(functools.partial(events.served_after, t1, n, types), 300)
                last = max(events.last_after(ty, t1) for ty in types)
                times.append(last - t1)
                pilot_cpus.append(cpu_seconds(pilot.pid) - cpu_a)
                sent = events.bytes_after(t1)
                sizes.append(sum(sent.values()))
                print(
                    f"{label} #{rep + 1}: {last - t1:.2f}s to {n} proxies (complete={done}), "
                    f"pilot cpu {pilot_cpus[-1]:.2f}s, "
                    f"load generators cpu {sum(cpu_seconds(g.pid) for g in gens) - load_a:.2f}s "
                    f"({(sum(minor_faults(g.pid) for g in gens) - faults_a) / 1e3:.0f}k page faults), "
                    f"sent {_mb(sizes[-1])} ({', '.join(f'{ty} {_mb(b)}' for ty, b in sorted(sent.items()))})"
                )
                time.sleep(1.5)
            if profiling:
                pilot.send_signal(signal.SIGUSR2)
            size = statistics.median(sizes)
            print(
                f"{label}: median {statistics.median(times):.2f}s (includes 100 ms debounce), "
                f"pilot cpu per push median {statistics.median(pilot_cpus):.2f}s, "
                f"sent per push median {_mb(size)} ({size / n / 1e3:.1f} KB per proxy)"
            )

        t2 = time.time()
        p = loadgen(f"127.0.0.1:{grpc_port}", 1, 10_000_000, load_cpus, args.delta, tls)
        procs.append(p)
        one = Events()
        one.follow(p)
        wait_for(lambda: one.count_after("rds", t2) >= 1 and one.count_after("eds", t2) >= 1, 60)
        took = max(one.last_after("rds", t2), one.last_after("eds", t2)) - t2
        print(f"new proxy connecting: all four types in {took:.2f}s (includes the load generator's start-up)")
        peak = rss_mb(pilot.pid, "VmHWM")
        print(f"pilot totals: cpu {cpu_seconds(pilot.pid):.1f}s, peak rss {peak:.0f} MiB")
        later = format_resets(events.resets_by_code(connected) + one.resets_by_code())
        print(f"stream resets after the connect storm, by status: {later}")
    finally:
        stop_all(procs)
        nats.stop()
    return 0


def _mb(size: float) -> str:
    """Bytes as MB (10^6): gRPC message bytes as the load generators received them."""
    return f"{size / 1e6:.3f} MB" if size < 1e7 else f"{size / 1e6:.0f} MB"


def _change(kind: str, i: int) -> Any:
    async def go(b: Buckets) -> None:
        if kind == "service":
            await b.services.put(service_key(NS, f"svc-{i}.{NS}.svc.cluster.local"), service(i))
        else:
            await b.workloads.put(workload_key(NS, f"svc-5-extra-{i}"), workload(5, 2 + i % 50))

    return go


if __name__ == "__main__":
    sys.exit(main())
