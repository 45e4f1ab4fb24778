"""Faults: SIGKILL each component of a running ``meshctl up`` under load; what traffic and recovery saw.

Runs the real ``meshctl up`` on a relocated copy of ``examples/`` (``meshplane.ctl.localmesh.testing``)
and, ``--repeat`` times per component, sends ``--rate`` requests/s through the ingress gateway,
SIGKILLs the component's current PID and waits for ``meshctl up`` to say it is ready again
(``meshplane.ctl.localmesh.faults.run_fault``). Per component: requests sent and failed, time
to restart (kill → ready again, from ``meshctl up``'s own output), and time to reconverge (kill →
an edit written right after the restart served through the gateway). The sidecar row kills
reviews-v2's Envoy, which only the ``end-user: jason`` requests pass: "failed" counts the other
requests, and "reconverge" is the kill → jason's requests served again.

    .venv/bin/python -m benchmarks.faults.run [--repeat 3] [--rate 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshplane.ctl.localmesh.faults import JASON, run_fault, run_sidecar_fault, serving, wait_for
from meshplane.ctl.localmesh.testing import UpRun, running_up

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = [
    "nats-server",
    "meshplane-pilot",
    "meshplane-citadel",
    "meshplane-galley",
    "node-agent-productpage-v1.bookinfo",
]
SIDECAR = "envoy-reviews-v2.bookinfo"


def _row(name: str, sent: int, failed: int, restart: list[float], reconverge: list[float]) -> str:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} s" + (f" ({min(xs):.1f}-{max(xs):.1f})" if len(xs) > 1 else "")

    return f"| {name} | {sent} | {failed} | {med(restart)} | {med(reconverge)} |"


def _once(run: UpRun, name: str, rate: float) -> tuple[float, float, float, float]:
    """(requests sent, failed, restart s, reconverge s) of one kill."""
    if name == SIDECAR:
        s = run_sidecar_fault(run, name, rate)
        return len(s.others.results), len(s.others.failures()), s.ready_s, s.traffic_back_s
    f = run_fault(run, name, rate)
    if f.counts_after != f.counts_before:
        print(f"{name}: bus counts {f.counts_before} -> {f.counts_after}", file=sys.stderr)
    return len(f.load.results), len(f.load.failures()), f.ready_s, f.reconverge_s


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args(argv)
    logging.getLogger("meshplane.shared.bus").setLevel(logging.ERROR)  # each count's close is no news
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # as on a user's machine
        with running_up(REPO / "examples", Path(tmp), env=env) as run:
            wait_for(lambda: serving(run.gateway, "v2", JASON), 60, "the gateway to serve")
            for name in [*COMPONENTS, SIDECAR]:
                figures = [_once(run, name, args.rate) for _ in range(args.repeat)]
                label = f"{name} (others / jason back)" if name == SIDECAR else name
                sent, failed, restart, reconverge = (list(col) for col in zip(*figures, strict=True))
                rows.append(_row(label, int(sum(sent)), int(sum(failed)), restart, reconverge))
                print(rows[-1], flush=True)
    print(
        f"\nfaults, {args.repeat} kills per component at {args.rate:.0f} requests/s, "
        f"ended {time.strftime('%H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}:"
    )
    print("| component | requests sent | failed | restart (kill → ready), median (min-max) | reconverge |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
