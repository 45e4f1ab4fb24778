"""CLI start-up: median wall time of ``meshctl`` verbs against the bare interpreter, same run.

Each command runs ``--repeat`` times (10) from the venv, interleaved round by round so load
changes hit every command alike; the figure is the median, and the ratio is to ``python -c pass``
measured in the same rounds. Two modes:

* ``cached``: bytecode cached (in a temporary ``PYTHONPYCACHEPREFIX``, warmed by one run first),
  as on a user's machine where Python writes ``__pycache__`` on first import;
* ``uncached``: ``PYTHONDONTWRITEBYTECODE`` and no cache, so every module of the venv is compiled
  on each run (this sandbox's setting; the stdlib keeps its installed bytecode either way).

With ``--before REV`` the ``meshctl`` commands also run from that revision's ``shared`` and
``ctl`` sources (``git archive``, put first on ``PYTHONPATH``), in the same rounds, so a change's
before and after are measured under the same load.

Usage: ``python -m benchmarks.cli.run [--repeat 10] [--before REV]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_YAML = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""


def commands(bin_dir: Path, one: Path) -> dict[str, list[str]]:
    meshctl = str(bin_dir / "meshctl")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "meshctl --help": [meshctl, "--help"],
        "meshctl validate -f one.yaml": [meshctl, "validate", "-f", str(one)],
        "meshctl bootstrap --type sidecar": [meshctl, "bootstrap", "--type", "sidecar"],
    }


Run = tuple[list[str], dict[str, str]]


def extract(rev: str, into: Path) -> str:
    """``shared/src`` and ``ctl/src`` of ``rev`` under ``into``; the PYTHONPATH that puts them first."""
    archive = subprocess.run(
        ["git", "archive", rev, "shared/src", "ctl/src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return os.pathsep.join(str(into / part / "src") for part in ("shared", "ctl"))


def measure(runs: dict[str, Run], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for argv, env in runs.values():  # one warm-up run each (writes the bytecode cache, if any)
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    for _ in range(repeat):
        for name, (argv, env) in runs.items():
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0 and "--help" not in name:
                raise SystemExit(f"{name} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--before", metavar="REV", help="also run meshctl from this git revision")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshplane-cli-bench-") as tmp:
        one = Path(tmp) / "one.yaml"
        one.write_text(ONE_YAML)
        argvs = commands(Path(sys.executable).parent, one)
        unset = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPATH")
        base = {k: v for k, v in os.environ.items() if k not in unset}
        before = ""
        if args.before:
            (Path(tmp) / "before").mkdir()
            before = extract(args.before, Path(tmp) / "before")
        modes = {
            "cached": {**base, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")},
            "uncached": {**base, "PYTHONDONTWRITEBYTECODE": "1"},
        }
        print(f"load average before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; {args.repeat} rounds")
        for mode, env in modes.items():
            runs: dict[str, Run] = {name: (argv, env) for name, argv in argvs.items()}
            if before:
                old_env = {**env, "PYTHONPATH": before}
                runs |= {
                    f"{name} ({args.before})": (argv, old_env)
                    for name, argv in argvs.items()
                    if "meshctl" in name
                }
            medians = measure(runs, args.repeat)
            bare = medians["python -c pass"]
            print(f"\n{mode} bytecode:")
            print(f"{'COMMAND':<48}{'MEDIAN':>10}{'RATIO':>10}")
            for name, value in medians.items():
                print(f"{name:<48}{value * 1000:>8.0f}ms{value / bare:>9.1f}x")
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
