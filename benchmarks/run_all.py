"""`make bench`: run every benchmark area's ``run.py`` in turn, each in its own process.

An area is a folder ``benchmarks/<area>/`` with a ``run.py`` that prints its figures. Pass area
names to run only those: ``python -m benchmarks.run_all xds ca``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    areas = sorted(p.parent.name for p in HERE.glob("*/run.py"))
    chosen = [a for a in areas if not argv or a in argv]
    if not chosen:
        print(f"no benchmark areas match {argv}; known: {', '.join(areas) or 'none'}", file=sys.stderr)
        return 2
    failed = []
    for area in chosen:
        print(f"== benchmarks/{area} ==", flush=True)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{area}.run"], cwd=HERE.parent)
        if code:
            failed.append(area)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
