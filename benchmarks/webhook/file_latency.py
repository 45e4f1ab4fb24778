"""File-to-bus latency of the directory source: write a file, time until the bus watch sees the PUT.

Runs nats-server and meshplane-galley as processes; this process writes the files and watches
the config bucket. Prints median / p90 / max over ``--samples`` writes (one write at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.webhook import galleyproc
from meshplane.shared.bus import Buckets, Bus, BusOptions, EventType

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench, namespace: default}}
spec:
  hosts: [bench]
  http:
  - route:
    - destination: {{host: bench, subset: v{n}}}
"""


async def measure(conf: Path, nats_url: str, samples: int) -> list[float]:
    bus = await Bus.connect(BusOptions(url=nats_url))
    latencies: list[float] = []
    try:
        async with Buckets(bus).config.watch() as watch:
            seen: asyncio.Queue[float] = asyncio.Queue()

            async def reader() -> None:
                async for ev in watch:
                    if ev.type is EventType.PUT:
                        seen.put_nowait(time.perf_counter())

            task = asyncio.create_task(reader())
            for n in range(samples + 1):
                tmp = conf / ".bench.yaml.tmp"
                tmp.write_text(VS.format(n=n))
                start = time.perf_counter()
                os.replace(tmp, conf / "bench.yaml")
                arrived = await asyncio.wait_for(seen.get(), 10)
                if n:  # the first write is a warm-up
                    latencies.append((arrived - start) * 1000)
                await asyncio.sleep(0.2)
            task.cancel()
    finally:
        await bus.close()
    return latencies


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=30)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        conf = tmp / "conf"
        conf.mkdir()
        with galleyproc.galley(tmp, conf) as running:
            lat = asyncio.run(measure(conf, running.nats_url, args.samples))
    lat.sort()
    print(
        f"file write -> bus PUT over {len(lat)} writes: median {statistics.median(lat):.1f} ms, "
        f"p90 {lat[int(len(lat) * 0.9)]:.1f} ms, max {lat[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
