"""Galley webhook benchmark: the real ``meshplane-galley`` (one worker) against a load generator process.

Starts nats-server and meshplane-galley on free ports (empty config dir), then runs
``benchmarks/webhook/load.py`` in its own process for several closed-loop concurrencies and
for a fixed 500 requests/s, each with an AdmissionReview for a realistic 30-route VirtualService.
Prints a Markdown table for BENCHMARKS.md. ``--repeat N`` runs everything N times and reports medians.
Then runs ``file_latency.py`` (directory source: file written -> PUT seen on the bus).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.webhook import galleyproc

HERE = Path(__file__).resolve().parent


def virtual_service(routes: int = 30) -> dict[str, Any]:
    http = []
    for i in range(routes):
        http.append(
            {
                "name": f"route-{i}",
                "match": [
                    {"uri": {"prefix": f"/api/v{i}/"}, "headers": {"x-tenant": {"exact": f"tenant-{i}"}}},
                    {"uri": {"regex": f"^/legacy/{i}/[a-z]+$"}, "method": {"exact": "GET"}},
                ],
                "route": [
                    {
                        "destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}},
                        "weight": 90,
                    },
                    {
                        "destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}},
                        "weight": 10,
                    },
                ],
                "timeout": "5s",
                "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,connect-failure"},
                "headers": {"request": {"set": {"x-route": f"route-{i}"}}},
            }
        )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews", "reviews.example.com"], "gateways": ["mesh"], "http": http},
    }


def admission_review() -> dict[str, Any]:
    obj = virtual_service()
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "name": "reviews",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


def load(
    port: int, body: Path, mode: str, concurrency: int, duration: float, rate: float = 500
) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.webhook.load", "--port", str(port), "--body", str(body),
            "--mode", mode, "--concurrency", str(concurrency), "--duration", str(duration),
            "--rate", str(rate),
        ],
        capture_output=True, text=True, check=True, cwd=HERE.parent.parent, timeout=duration * 4 + 60,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def measured(
    running: galleyproc.Running, body: Path, mode: str, conc: int, duration: float, rate: float = 500
) -> dict[str, float]:
    """One load run, plus galley's CPU time per request (robust to other load on the machine)."""
    before = running.cpu_seconds()
    result = load(running.webhook_port, body, mode, conc, duration, rate)
    result["cpu_ms"] = (running.cpu_seconds() - before) * 1000 / max(result["requests"], 1)
    return result


def _row(label: str, runs: list[dict[str, float]]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_ms")}
    return f"| {label} | {med['rps']:.0f} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {med['cpu_ms']:.2f} |"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        body = tmp / "review.json"
        body.write_text(json.dumps(admission_review()))
        # The same body as a DELETE (allowed without validation): the transport's own cost.
        transport_only = tmp / "delete.json"
        review = admission_review()
        review["request"]["operation"] = "DELETE"
        transport_only.write_text(json.dumps(review))
        conf = tmp / "conf"
        conf.mkdir()
        with galleyproc.galley(tmp, conf) as running:
            port = running.webhook_port
            load(port, body, "closed", 4, 2.0)  # warm-up
            scenarios = [("closed", c, 0.0) for c in (1, 4, 16)] + [("rate", 16, 500.0)]
            rows = []
            for mode, conc, rate in scenarios:
                runs = [
                    measured(running, body, mode, conc, args.duration, rate or 500)
                    for _ in range(args.repeat)
                ]
                label = (
                    f"closed loop, {conc} connection(s)"
                    if mode == "closed"
                    else f"open loop {rate:.0f} req/s"
                )
                rows.append(_row(label, runs))
            runs = [measured(running, transport_only, "closed", 1, args.duration) for _ in range(args.repeat)]
            rows.append(_row("transport only (same body, DELETE: not validated), 1 connection", runs))
            print(f"AdmissionReview body: {body.stat().st_size} bytes (30-route VirtualService)")
            print("| load | throughput (req/s) | p50 (ms) | p99 (ms) | galley CPU per request (ms) |")
            print("|---|---|---|---|---|")
            print("\n".join(rows))
    # The directory source's file-to-bus latency, in its own processes.
    return subprocess.call([sys.executable, "-m", "benchmarks.webhook.file_latency"], cwd=HERE.parent.parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
