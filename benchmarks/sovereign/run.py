"""Side by side with sovereign: the same S clusters, the same N real Envoys, time until all are ready.

Each side in turn (alternating, ``--reps`` times): start the control plane fresh on CPU 0 (meshplane:
nats-server + Pilot seeded as ``benchmarks/xds`` does; sovereign: its own virtualenv, REST-JSON
polling), start N Envoys on the last CPU, and time until every Envoy is ready (server LIVE,
``active_clusters`` >= S, ``warming_clusters`` == 0); then add one service and time until every
Envoy has the new cluster; then sit idle for ``--idle`` seconds. Prints each run and the medians:
times, control-plane CPU seconds (process tree) and RSS. sovereign is installed from PyPI into a
throwaway virtualenv; when that cannot be done the sovereign side is skipped with the reason.

    python -m benchmarks.sovereign.run [--services 1000] [--envoys 20] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.sovereign.fleet import Fleet, is_ready, tree_cpu_seconds, tree_pss_mb, tree_rss_mb
from benchmarks.sovereign.meshplane_side import MeshplaneSide
from benchmarks.sovereign.sovereign_side import (
    SOVEREIGN_VERSION,
    SovereignSide,
    SovereignUnavailable,
    install_sovereign,
)


class Side(Protocol):
    name: str

    @property
    def settings(self) -> str: ...
    def start(self, cpu: int | None, timeout: float = ...) -> None: ...
    def bootstrap(self, k: int, admin_port: int) -> dict[str, Any]: ...
    def add_cluster(self) -> None: ...
    def pid(self) -> int: ...
    def stop(self) -> None: ...


@dataclass
class Result:
    side: str
    envoys: int
    ready_s: float = float("nan")
    ready_count: int = 0
    change_s: float = float("nan")
    change_count: int = 0
    cpu_ready_s: float = 0.0
    cpu_change_s: float = 0.0
    envoy_cpu_ready_s: float = 0.0
    idle_cpu_per_s: float = float("nan")
    pss_mb: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.side}: all {self.ready_count}/{self.envoys} Envoys ready in {self.ready_s:.2f}s "
            f"(cp cpu {self.cpu_ready_s:.2f}s, Envoys' cpu {self.envoy_cpu_ready_s:.2f}s); "
            f"new cluster on {self.change_count}/{self.envoys} in {self.change_s:.2f}s "
            f"(cp cpu {self.cpu_change_s:.2f}s); idle cp cpu {self.idle_cpu_per_s:.2f} s/s; "
            f"cp memory pss {self.pss_mb:.0f} MiB, rss {self.rss_mb:.0f} MiB "
            f"(peak {self.peak_rss_mb:.0f})"
        )


def run_once(
    side: Side,
    workdir: Path,
    envoys: int,
    services: int,
    cpus: tuple[int | None, int | None] = (None, None),
    timeout: float = 300.0,
    idle: float = 5.0,
) -> Result:
    """One measurement: fresh control plane, ``envoys`` fresh Envoys, one change; everything stopped after."""
    res = Result(side.name, envoys)
    side.start(cpus[0])
    fleet = Fleet(workdir / "envoys", envoys, side.bootstrap)
    try:
        pid = side.pid()
        cpu0 = tree_cpu_seconds(pid)
        t0 = fleet.start(cpus[1])
        last, res.ready_count = fleet.wait_all(lambda _k, s: is_ready(s, services), timeout)
        res.ready_s, cpu1 = last - t0, tree_cpu_seconds(pid)
        res.cpu_ready_s, res.envoy_cpu_ready_s = cpu1 - cpu0, fleet.cpu_seconds()
        if res.ready_count < envoys:
            res.notes.append(f"only {res.ready_count} of {envoys} ready after {timeout}s")
            return res
        base = fleet.active_clusters()

        def has_new(k: int, s: dict[str, int]) -> bool:
            grown = s.get("cluster_manager.active_clusters", 0) >= base[k] + 1
            return grown and s.get("cluster_manager.warming_clusters", 1) == 0

        t1 = time.monotonic()
        side.add_cluster()
        last, res.change_count = fleet.wait_all(has_new, timeout)
        res.change_s, cpu2 = last - t1, tree_cpu_seconds(pid)
        res.cpu_change_s = cpu2 - cpu1
        if idle > 0:
            t2 = time.monotonic()
            time.sleep(idle)
            res.idle_cpu_per_s = (tree_cpu_seconds(pid) - cpu2) / (time.monotonic() - t2)
        res.pss_mb, res.rss_mb, res.peak_rss_mb = (
            tree_pss_mb(pid),
            tree_rss_mb(pid),
            tree_rss_mb(pid, "VmHWM"),
        )
        return res
    finally:
        fleet.stop()
        side.stop()


def _median(results: list[Result], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in results))


def _summary(name: str, results: list[Result]) -> str:
    good = [r for r in results if r.change_count == r.envoys]
    if not good:
        return f"{name}: no complete run ({'; '.join(n for r in results for n in r.notes)})"
    return (
        f"{name} median of {len(good)}: all ready {_median(good, 'ready_s'):.2f}s, "
        f"new cluster everywhere {_median(good, 'change_s'):.2f}s, "
        f"cp cpu to ready {_median(good, 'cpu_ready_s'):.2f}s "
        f"(Envoys' {_median(good, 'envoy_cpu_ready_s'):.2f}s), "
        f"cp cpu for the change {_median(good, 'cpu_change_s'):.2f}s, "
        f"idle cp cpu {_median(good, 'idle_cpu_per_s'):.2f} s/s, "
        f"cp pss {_median(good, 'pss_mb'):.0f} MiB, rss {_median(good, 'rss_mb'):.0f} MiB "
        f"(peak {_median(good, 'peak_rss_mb'):.0f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--envoys", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--side", choices=["both", "meshplane", "sovereign"], default="both")
    parser.add_argument("--refresh-delay", type=float, default=1.0, help="Envoy REST poll interval (s)")
    parser.add_argument("--context-refresh", type=int, default=1, help="sovereign context re-read (s)")
    parser.add_argument("--sovereign-workers", type=int, default=None, help="default: sovereign's")
    parser.add_argument("--sovereign-bin", type=Path, default=None, help="an installed sovereign script")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured after")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    pins: tuple[int | None, int | None] = (cpus[0], cpus[-1]) if len(cpus) > 1 else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="sovereign-bench-"))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs; control plane on CPU {pins[0]}, Envoys on CPU {pins[1]}")
    print(f"load before: {load}")
    print(f"{args.services} clusters, {args.envoys} Envoys, {args.reps} runs per side; work dir {tmp}")
    sides: list[str] = ["meshplane", "sovereign"] if args.side == "both" else [args.side]
    script = args.sovereign_bin
    if "sovereign" in sides and script is None:
        try:
            t = time.monotonic()
            script = install_sovereign(tmp / "sovereign-env")
            print(f"installed sovereign {SOVEREIGN_VERSION} in {time.monotonic() - t:.1f}s")
        except SovereignUnavailable as exc:
            print(f"sovereign side skipped: {exc}")
            sides.remove("sovereign")
    results: dict[str, list[Result]] = {s: [] for s in sides}
    try:
        for rep in range(args.reps):
            for name in sides:
                workdir = tmp / f"{name}-{rep}"
                side: Side
                if name == "meshplane":
                    side = MeshplaneSide(workdir / "cp", args.services)
                else:
                    assert script is not None
                    side = SovereignSide(
                        workdir / "cp",
                        args.services,
                        script,
                        args.refresh_delay,
                        args.context_refresh,
                        args.sovereign_workers,
                    )
                if rep == 0:
                    print(f"{name} settings: {side.settings}")
                res = run_once(side, workdir, args.envoys, args.services, pins, args.timeout, args.idle)
                results[name].append(res)
                print(f"run {rep + 1}: {res.line()}", *res.notes, flush=True)
    finally:
        shutil.rmtree(tmp / "sovereign-env", ignore_errors=True)  # the throwaway virtualenv; logs stay
    for name in sides:
        print(_summary(name, results[name]))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load after: {load}")
    return 0 if all(r.change_count == r.envoys for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
