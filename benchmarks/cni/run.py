"""CNI ADD latency: the plugin executed like a runtime does it (the launcher the agent installed,
CNI_* env, NetConf with a chained prevResult on stdin) for N pods, each in its own fresh netns.

Netns creation is outside the timed region; the timed region is fork/exec of the plugin to its
exit: interpreter start, the agent round trip over the Unix socket, setns, iptables-save and
iptables-restore.  Anchors on the same machine, same run: a bare ``python -c pass`` (interpreter
floor) and ``nsenter`` + ``iptables-restore`` of the same rules (iptables floor).

    sudo .venv/bin/python -m benchmarks.cni.run [--pods 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshplane.cni.rules.iptables import parse_save, restore_add
from meshplane.cni.rules.settings import settings_from_annotations
from meshplane.cni.testing import agent, netconf, pod_object, root_skip_reason, sh


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


CPU: list[float] = []  # CPU ms (user+sys of the process and everything it waited for) per call


def timed(argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=False)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return wall, done.returncode, done.stdout


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<32} n={len(values):<4} p50={statistics.median(values):6.1f} ms  "
        f"p90={pct(values, 0.9):6.1f} ms  p99={pct(values, 0.99):6.1f} ms  max={max(values):6.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    reason = root_skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    suffix = secrets.token_hex(2)
    names = [f"mpbench-{suffix}-{i}" for i in range(args.pods)]
    pods = [
        pod_object(f"pod-{i}", namespace="bench", ip=f"10.77.{i // 250}.{i % 250 + 2}")
        for i in range(args.pods)
    ]
    wall: dict[str, list[float]] = {"ADD": [], "DEL": [], "python": [], "iptables": []}
    cpu: dict[str, list[float]] = {key: [] for key in wall}
    rules = restore_add(settings_from_annotations({}), parse_save(""))

    def measure(key: str, argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> str:
        ms, code, out = timed(argv, env, stdin)
        if code != 0:
            raise RuntimeError(f"{key} failed: {out}")
        wall[key].append(ms)
        cpu[key].append(CPU[-1])
        return out

    with (
        tempfile.TemporaryDirectory(prefix="mpcni-bench-") as tmp,
        agent(Path(tmp), pods, "--repair=false") as a,
    ):
        plugin = str(a.bin_dir / "meshplane-cni")
        try:
            for i, name in enumerate(names):
                sh("ip", "netns", "add", name)  # not timed
                address = pods[i]["status"]["podIP"]
                prev = {
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "sandbox": f"/run/netns/{name}"}],
                    "ips": [{"address": f"{address}/16", "interface": 0}],
                }
                env = {
                    "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "CNI_COMMAND": "ADD",
                    "CNI_CONTAINERID": f"c{i}",
                    "CNI_NETNS": f"/run/netns/{name}",
                    "CNI_IFNAME": "eth0",
                    "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{i}",
                    "CNI_PATH": str(a.bin_dir),
                }
                conf = json.dumps(netconf(a.run_dir, prev))
                measure("ADD", [plugin], env, conf)
                measure("DEL", [plugin], {**env, "CNI_COMMAND": "DEL"}, conf)
                # anchors interleaved with the plugin runs, so they see the same machine load
                measure("python", [sys.executable, "-c", "pass"])
                measure(
                    "iptables",
                    ["nsenter", f"--net=/run/netns/{name}", "iptables-restore", "--noflush"],
                    None,
                    rules,
                )
        finally:
            for name in names:
                sh("ip", "netns", "del", name, check=False)
    labels = {
        "ADD": "ADD (plugin exec)",
        "DEL": "DEL (plugin exec)",
        "python": "anchor: python -c pass",
        "iptables": "anchor: nsenter+restore",
    }
    for key, label in labels.items():
        print(summary(f"{label} wall", wall[key]))
    for key, label in labels.items():
        print(summary(f"{label} cpu", cpu[key]))
    floor = statistics.median(wall["python"]) + statistics.median(wall["iptables"])
    print(f"ADD wall p50 / (python + iptables anchors) = {statistics.median(wall['ADD']) / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
