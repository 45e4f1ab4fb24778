"""meshplane-pilot: parse flags and Istio's PILOT_* variables, then run Pilot until stopped."""

from __future__ import annotations

import asyncio
import gc
import os
import sys

import uvloop

from meshplane.pilot.app import Pilot
from meshplane.pilot.settings import parse_args
from meshplane.shared.lifecycle import run_service
from meshplane.shared.telemetry import configure_logging, configure_metrics, configure_tracing

GC_GEN0_THRESHOLD = 20_000


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv, os.environ)
    configure_logging()
    configure_tracing("meshplane-pilot", settings.pilot_id)
    # A push to thousands of streams allocates millions of short-lived containers (futures,
    # tasks, requests); with the default young generation (700) the collector ran often enough
    # to take a sixth of Pilot's CPU during a push (py-spy). See also gc.freeze() in app.py.
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    # A push wakes the loop several times per proxy and type (gRPC completions, queues, locks);
    # uvloop's loop costs about a tenth of Pilot's CPU per push less than asyncio's (BENCHMARKS.md).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    pilot = Pilot(settings)
    configure_metrics("meshplane-pilot", pilot.metrics.registry, settings.pilot_id)

    async def run(stop: asyncio.Event) -> None:
        await pilot.run(stop)

    return run_service("meshplane-pilot", run)


if __name__ == "__main__":
    sys.exit(main())
