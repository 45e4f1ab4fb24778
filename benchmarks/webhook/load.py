"""Load generator for the galley webhook: raw HTTP/1.1 keep-alive connections in this process.

Two modes, each printing one JSON line:

* ``closed``: ``--concurrency`` connections send back-to-back for ``--duration`` seconds
  (throughput, with latency under that concurrency);
* ``rate``: open loop at ``--rate`` requests/s over ``--concurrency`` connections; latency is
  measured from each request's scheduled time, so a stalled server cannot hide its queueing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time


def _request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /validate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if status != 200 or b'"allowed":true' not in body:
        raise RuntimeError(f"unexpected answer {status}: {body[:200]!r}")
    return status


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed(host: str, port: int, body: bytes, concurrency: int, duration: float) -> dict[str, float]:
    payload = _request(host, port, body)
    latencies: list[float] = []
    end = time.perf_counter() + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < end:
            start = time.perf_counter()
            writer.write(payload)
            await _read_response(reader)
            latencies.append(time.perf_counter() - start)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return _summary(latencies, elapsed)


async def rate(
    host: str, port: int, body: bytes, concurrency: int, rps: float, duration: float
) -> dict[str, float]:
    payload = _request(host, port, body)
    latencies: list[float] = []
    queue: asyncio.Queue[float] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while True:
            scheduled = await queue.get()
            if scheduled < 0:
                break
            writer.write(payload)
            await _read_response(reader)
            latencies.append(time.perf_counter() - scheduled)
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    started = time.perf_counter()
    total = int(rps * duration)
    for i in range(total):
        due = started + i / rps
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(due)
    for _ in workers:
        queue.put_nowait(-1.0)
    await asyncio.gather(*workers)
    return _summary(latencies, time.perf_counter() - started)


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body", required=True, help="file with the AdmissionReview JSON")
    p.add_argument("--mode", choices=("closed", "rate"), required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--duration", type=float, default=10)
    args = p.parse_args(argv)
    with open(args.body, "rb") as f:
        body = f.read()
    if args.mode == "closed":
        result = asyncio.run(closed("127.0.0.1", args.port, body, args.concurrency, args.duration))
    else:
        result = asyncio.run(rate("127.0.0.1", args.port, body, args.concurrency, args.rate, args.duration))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
