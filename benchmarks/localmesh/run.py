"""Local mesh: how long ``meshctl up`` takes to serve, and how soon an edited VirtualService serves.

Runs the real ``meshctl up`` on a relocated copy of ``examples/`` (``meshplane.ctl.localmesh.testing``),
then flips ``reviews.yaml`` between "all to v1" and "all to v3" ``--edits`` times. For each edit
the clock starts when the file is written and stops at the first response through the gateway
that shows the new version (requests back to back, each a new connection like curl).

    .venv/bin/python -m benchmarks.localmesh.run [--edits 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from meshplane.ctl.localmesh.testing import running_up

REPO = Path(__file__).resolve().parents[2]
ROUTE = "  http:\n  - route:\n    - destination: {{host: reviews, subset: {v}}}\n"


def _write_route(vs: Path, version: str) -> None:
    text = vs.read_text()
    start = text.index("  http:\n")
    end = text.index("---", start)
    vs.write_text(text[:start] + ROUTE.format(v=version) + text[end:])


def _serves(url: str, version: str, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if f"reviews {version}" in httpx.get(url, timeout=5).text:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
    raise TimeoutError(f"reviews {version} not served {timeout}s after the edit")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-localmesh-") as tmp:
        started = time.monotonic()
        with running_up(REPO / "examples", Path(tmp)) as run:
            up_s = time.monotonic() - started
            _serves(run.gateway, "v", 30)
            vs = run.config / "reviews.yaml"
            latencies = []
            for i in range(args.edits):
                version = "v3" if i % 2 == 0 else "v1"
                written = time.monotonic()
                _write_route(vs, version)
                _serves(run.gateway, version)
                latencies.append(time.monotonic() - written)
                time.sleep(0.3)  # let every sidecar settle before the next edit
    ms = sorted(x * 1000 for x in latencies)
    print(f"meshctl up until serving: {up_s:.1f} s")
    print(
        f"edit -> served, {len(ms)} edits: median {statistics.median(ms):.0f} ms, "
        f"p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms, max {ms[-1]:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
