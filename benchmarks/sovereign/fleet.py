"""N real Envoys against one control plane, and what the benchmark reads from them and from the CP.

``Fleet`` writes one bootstrap per Envoy (the control-plane side decides its contents), starts
them pinned to one CPU, and watches each Envoy's admin stats until it is *ready*: ``server.state``
LIVE (0), ``cluster_manager.active_clusters`` at least the expected count and
``cluster_manager.warming_clusters`` zero. ``tree_cpu_seconds``, ``tree_rss_mb`` and ``tree_pss_mb``
add up a process and its descendants (sovereign runs as a gunicorn master with workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import free_port

STATS_FILTER = r"^(server\.state|cluster_manager\.(active|warming)_clusters)$"
_STAT_LINE = re.compile(r"^([\w.]+): (\d+)$", re.MULTILINE)


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Children started inside inherit affinity to ``cpu`` (this process gets its own back after)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def envoy_stats(admin_port: int, timeout: float = 2.0) -> dict[str, int]:
    """``server.state`` and the cluster manager's active/warming gauges of one Envoy."""
    url = f"http://127.0.0.1:{admin_port}/stats?filter={urllib.parse.quote(STATS_FILTER)}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    return {m.group(1): int(m.group(2)) for m in _STAT_LINE.finditer(text)}


def is_ready(stats: dict[str, int], clusters: int) -> bool:
    return (
        stats.get("server.state") == 0
        and stats.get("cluster_manager.active_clusters", 0) >= clusters
        and stats.get("cluster_manager.warming_clusters", 1) == 0
    )


class Fleet:
    """``n`` Envoys; ``bootstrap(k, admin_port)`` returns the bootstrap dict of Envoy ``k``."""

    def __init__(self, workdir: Path, n: int, bootstrap: Callable[[int, int], dict[str, Any]]) -> None:
        self.workdir = workdir
        self.envoys: list[EnvoyProcess] = []
        workdir.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            port = free_port()
            path = workdir / f"envoy-{k}.json"
            path.write_text(json.dumps(bootstrap(k, port)))
            self.envoys.append(EnvoyProcess(path, port, log_file=workdir / f"envoy-{k}.log"))

    def start(self, cpu: int | None) -> float:
        """Start every Envoy; returns the monotonic time just before the first one started."""
        t0 = time.monotonic()
        with pinned(cpu):
            for e in self.envoys:
                e.start()
        return t0

    def wait_all(self, done: Callable[[int, dict[str, int]], bool], timeout: float) -> tuple[float, int]:
        """Poll until ``done(k, stats)`` holds for every Envoy; (time the last one got there, count)."""
        pending = set(range(len(self.envoys)))
        last = time.monotonic()
        deadline = last + timeout
        while pending and time.monotonic() < deadline:
            for k in sorted(pending):
                e = self.envoys[k]
                if e.proc is not None and e.proc.poll() is not None:
                    raise RuntimeError(f"envoy {k} exited with {e.proc.returncode}; log: {e.log_file}")
                try:
                    stats = envoy_stats(e.admin_port)
                except OSError:
                    continue
                if done(k, stats):
                    pending.discard(k)
                    last = time.monotonic()
            if pending:
                time.sleep(0.02)
        return last, len(self.envoys) - len(pending)

    def cpu_seconds(self) -> float:
        """User+system CPU seconds of all the Envoys so far."""
        return sum(tree_cpu_seconds(e.proc.pid) for e in self.envoys if e.proc is not None)

    def active_clusters(self) -> list[int]:
        return [envoy_stats(e.admin_port).get("cluster_manager.active_clusters", 0) for e in self.envoys]

    def stop(self) -> None:
        for e in self.envoys:
            if e.proc is not None and e.proc.poll() is None:
                e.proc.terminate()
        for e in self.envoys:
            e.stop()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (from ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            total += _proc_cpu(p)
    return total


def tree_rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Sum of ``key`` (VmRSS now, or VmHWM peak) over the tree, in MiB (shared pages counted per process)."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            total += _proc_kib(p, key)
    return total / 1024


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of the tree in MiB: pages shared by forked workers counted once."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024
