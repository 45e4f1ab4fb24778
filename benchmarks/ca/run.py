"""CreateCertificate load: a real meshplane-citadel, driven from separate load processes.

CSRs are made before the clock starts, so the client's key generation is not measured.
Two phases per CA key type: closed-loop saturation (CSR/s) and open-loop at a fixed rate
(latency p50/p99). Run: ``.venv/bin/python -m benchmarks.ca.run [--key-types ec rsa]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from meshplane.citadel.testing import CitadelProcess, ServiceProcess, make_csr
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc


def _load_worker(
    target: str,
    root: bytes,
    token: str,
    csrs: list[str],
    mode: str,
    param: float,
    duration: float,
    channels: int,
    out: mp.Queue,
) -> None:
    async def run() -> tuple[int, int, list[float]]:
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        # separate connections (not one shared subchannel), so SO_REUSEPORT workers each get some
        chans = [
            grpc.aio.secure_channel(target, creds, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels)
        ]
        stubs = [ca_pb2_grpc.IstioCertificateServiceStub(c) for c in chans]
        metadata = [("authorization", f"Bearer {token}")]
        latencies: list[float] = []
        errors = 0
        i = 0

        async def one() -> None:
            nonlocal errors, i
            req = ca_pb2.IstioCertificateRequest(csr=csrs[i % len(csrs)])
            i += 1
            stub = stubs[i % len(stubs)]
            t0 = time.perf_counter()
            try:
                await stub.CreateCertificate(req, metadata=metadata, timeout=10)
                latencies.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError:
                errors += 1

        for _ in stubs:  # warm up the connections
            await one()
        latencies.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        if mode == "closed":

            async def worker() -> None:
                while loop.time() < end:
                    await one()

            await asyncio.gather(*(worker() for _ in range(int(param))))
        else:
            interval = 1.0 / param
            tasks = []
            next_at = loop.time()
            while next_at < end:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
                next_at += interval
            await asyncio.gather(*tasks)
        for c in chans:
            await c.close()
        return len(latencies), errors, latencies

    out.put(asyncio.run(run()))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (``--workers``; Linux /proc), to report
    CSRs per CPU-second (per core)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _phase(
    citadel: CitadelProcess,
    token: str,
    csrs: list[str],
    procs: int,
    mode: str,
    param: float,
    duration: float,
    channels: int = 1,
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    root = citadel.root_pem()
    share = param / procs if mode == "open" else param
    workers = [
        ctx.Process(
            target=_load_worker,
            args=(citadel.target, root, token, csrs, mode, share, duration, channels, out),
        )
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    assert citadel.proc is not None
    cpu0 = _cpu_seconds(citadel.proc.pid)
    results = [out.get(timeout=duration + 120) for _ in workers]
    cpu = _cpu_seconds(citadel.proc.pid) - cpu0
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r[2])
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [0.0] * 99
    return {
        "ok": ok,
        "errors": errors,
        "rate": ok / duration,
        "per_cpu_s": ok / cpu if cpu else 0.0,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
    }


def _floor(citadel: CitadelProcess, token: str, csrs: list[str], args: argparse.Namespace) -> None:
    """Closed loop against a server that does no work: grpc.aio's own cost per request."""
    noop = CitadelProcess(citadel.ca_dir, citadel.log_file)  # for its ports and target only
    noop.argv = [sys.executable, "-m", "benchmarks.ca.noop_server", "--ca-dir", str(citadel.ca_dir)]
    noop.argv += ["--port", str(noop.grpc_port)]
    ServiceProcess.start(noop)
    try:
        noop.wait_for(lambda: _port_open(noop.grpc_port), 30, "no-op server listening")
        floor = _phase(
            noop, token, csrs, args.procs, "closed", args.concurrency, args.duration, args.channels
        )
        print(
            f"no-op floor, closed loop {args.procs}x{args.concurrency}: {floor['rate']:.0f} req/s "
            f"({floor['per_cpu_s']:.0f} per server CPU-second), p50 {floor['p50_ms']:.1f} ms, "
            f"p99 {floor['p99_ms']:.1f} ms"
        )
    finally:
        noop.stop()


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--key-types", nargs="+", default=["ec", "rsa"])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=1, help="load processes")
    p.add_argument(
        "--concurrency", type=int, default=32, help="in-flight RPCs per load process (closed loop)"
    )
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[500.0, 1000.0],
        help="open-loop target CSR/s (all processes)",
    )
    p.add_argument("--workers", type=int, default=1, help="citadel --workers (serving processes)")
    p.add_argument("--channels", type=int, default=1, help="connections per load process")
    p.add_argument("--sign-window", default="3ms", help="citadel --sign-window (0s: sign each CSR at once)")
    p.add_argument("--profile", default="", help="run citadel under cProfile, writing this file")
    p.add_argument("--floor", action="store_true", help="also measure a no-op server on the same TLS gRPC")
    args = p.parse_args()
    csrs = [make_csr()[1] for _ in range(500)]
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load {os.getloadavg()}")
    print(
        f"citadel --workers {args.workers} --sign-window {args.sign_window}, "
        f"{args.procs} load processes x {args.channels} connections"
    )
    for key_type in args.key_types:
        with tempfile.TemporaryDirectory() as tmp:
            citadel = CitadelProcess(
                Path(tmp) / "ca",
                Path(tmp) / "citadel.log",
                args=["--workers", str(args.workers), "--sign-window", args.sign_window],
                env={"CITADEL_CA_KEY_TYPE": key_type},
            )
            if args.profile:
                citadel.argv = [sys.executable, "-m", "cProfile", "-o", args.profile, *citadel.argv[1:]]
            citadel.start()
            try:
                token = make_token(citadel.ca_dir, "default", "bench", "istio-ca", 3600)
                closed = _phase(
                    citadel, token, csrs, args.procs, "closed", args.concurrency, args.duration, args.channels
                )
                print(
                    f"{key_type} CA, closed loop {args.procs}x{args.concurrency}: {closed['rate']:.0f} CSR/s "
                    f"({closed['per_cpu_s']:.0f} per citadel CPU-second), p50 {closed['p50_ms']:.1f} ms, "
                    f"p99 {closed['p99_ms']:.1f} ms, errors {closed['errors']:.0f}"
                )
                if args.floor:
                    _floor(citadel, token, csrs, args)
                for rate in args.rates:
                    opened = _phase(
                        citadel, token, csrs, args.procs, "open", rate, args.duration, args.channels
                    )
                    print(
                        f"{key_type} CA, open loop at {rate:.0f}/s: achieved {opened['rate']:.0f} CSR/s "
                        f"({opened['per_cpu_s']:.0f} per citadel CPU-second), p50 {opened['p50_ms']:.1f} ms, "
                        f"p99 {opened['p99_ms']:.1f} ms, errors {opened['errors']:.0f}"
                    )
            finally:
                citadel.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
