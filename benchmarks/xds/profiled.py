"""Run ``meshplane-pilot`` with a cProfile that the benchmark switches on and off by signal.

``python -m benchmarks.xds.profiled FILE PILOT-ARGS...``: SIGUSR1 starts profiling, SIGUSR2 stops
it and writes the stats to FILE. The xDS benchmark (``--profile-pushes``) wraps only its full
pushes in them, so the profile shows what a push costs without the replay and the connect storm.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType

from meshplane.pilot.__main__ import main as pilot_main


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()

    def start(_sig: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return pilot_main(argv)


if __name__ == "__main__":
    sys.exit(main())
