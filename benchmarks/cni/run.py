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


def timed(argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=False)
    return (time.perf_counter() - start) * 1000, done.returncode, done.stdout


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} n={len(values):<4} p50={statistics.median(values):6.1f} ms  "
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
    add_ms: list[float] = []
    del_ms: list[float] = []
    floor_python: list[float] = []
    floor_iptables: list[float] = []
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
                ms, code, out = timed([plugin], env, conf)
                if code != 0:
                    print(f"ADD failed for pod-{i}: {out}")
                    return 1
                add_ms.append(ms)
                ms, code, out = timed([plugin], {**env, "CNI_COMMAND": "DEL"}, conf)
                del_ms.append(ms)
            rules = restore_add(settings_from_annotations({}), parse_save(""))
            for name in names[:50]:
                floor_python.append(timed([sys.executable, "-c", "pass"])[0])
                floor_iptables.append(
                    timed(
                        ["nsenter", f"--net=/run/netns/{name}", "iptables-restore", "--noflush"], stdin=rules
                    )[0]
                )
        finally:
            for name in names:
                sh("ip", "netns", "del", name, check=False)
    print(summary("ADD (plugin exec)", add_ms))
    print(summary("DEL (plugin exec)", del_ms))
    print(summary("anchor: python -c pass", floor_python))
    print(summary("anchor: nsenter+restore", floor_iptables))
    floor = statistics.median(floor_python) + statistics.median(floor_iptables)
    print(f"ADD p50 / (python floor + iptables floor) = {statistics.median(add_ms) / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
