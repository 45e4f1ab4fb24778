"""gRPC's own cost of a full push: a server sending one ready-made message to N streams.

No Pilot: a grpc.aio server on CPU 0 answers each of N streams (25 per connection, as the load
generators connect) with the same serialized bytes, the size of a full Delta push per proxy
(the 9080 route configuration, 418 KB). Its CPU per round is what gRPC and the kernel spend to
frame, encrypt and write those bytes, the floor under Pilot's CPU per push. With ``--tls``
the streams use mutual TLS (the certificates of ``benchmarks.xds.tls``) and the cipher suite
the two sides negotiate is read from the server's ServerHello. ``--option NAME=INT`` adds gRPC
server options (repeatable), to try what the write path offers.

    python -m benchmarks.xds.grpcsend [--tls] [--streams 2000] [--size 418384] [--option NAME=INT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from benchmarks.xds.tls import PILOT_NAME, TlsFiles, write_tls_files

METHOD = "/bench.Send/Stream"
PER_CHANNEL = 25
SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _server_hello_suite(data: bytes) -> str | None:
    """The cipher suite of a TLS ServerHello record (None when ``data`` does not start with one)."""
    if len(data) < 44 or data[0] != 0x16 or data[5] != 0x02:
        return None
    at = 5 + 4 + 2 + 32  # record header, handshake header, legacy version, random
    at += 1 + data[at]  # legacy session id
    code = int.from_bytes(data[at : at + 2], "big")
    return SUITES.get(code, hex(code))


async def _negotiated_suite(port: int, files: TlsFiles) -> str | None:
    """Connect once through a relay that reads the server's first record."""
    seen: list[str | None] = []

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, tap: bool) -> None:
        while data := await r.read(65536):
            if tap and not seen:
                seen.append(_server_hello_suite(data))
            w.write(data)
            await w.drain()
        w.close()

    async def relay(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(cr, uw, False), pipe(ur, cw, True), return_exceptions=True)

    front = await asyncio.start_server(relay, "127.0.0.1", 0)
    front_port = front.sockets[0].getsockname()[1]
    async with _channel(front_port, files) as ch:
        call = ch.stream_stream(METHOD)()
        await call.write(b"x")
        await call.read()
        call.cancel()
    front.close()
    return seen[0] if seen else None


def _channel(port: int, files: TlsFiles | None) -> grpc.aio.Channel:
    opts: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if files is None:
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts)
    creds = grpc.ssl_channel_credentials(
        files.root.read_bytes(), files.key("client").read_bytes(), files.cert("client").read_bytes()
    )
    opts.append(("grpc.ssl_target_name_override", PILOT_NAME))
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=opts)


async def client(port: int, files: TlsFiles | None, streams: int, rounds: int) -> None:
    """Open the streams, then ask every stream for one message per round; a line per round."""
    channels = [_channel(port, files) for _ in range(max(1, streams // PER_CHANNEL))]
    calls = [channels[i % len(channels)].stream_stream(METHOD)() for i in range(streams)]

    async def one(call: grpc.aio.StreamStreamCall) -> None:
        await call.write(b"x")
        await call.read()

    for r in range(rounds + 1):
        await asyncio.gather(*(one(c) for c in calls))
        print("connected" if r == 0 else "round", flush=True)
    for c in calls:
        c.cancel()


async def server(args: argparse.Namespace, files: TlsFiles | None) -> tuple[list[float], str | None]:
    message = os.urandom(args.size)
    options = [
        ("grpc.max_concurrent_streams", 100_000),
        ("grpc.server.max_pending_requests", 100_000),
        ("grpc.server.max_pending_requests_hard_limit", 100_000),
        *args.option,
    ]
    srv = grpc.aio.server(options=options)

    async def answer(requests: AsyncIterator[bytes], _ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield message

    handler = grpc.stream_stream_rpc_method_handler(answer)
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Send", {"Stream": handler}),))
    if files is None:
        port = srv.add_insecure_port("127.0.0.1:0")
    else:
        key, cert = files.key("pilot").read_bytes(), files.cert("pilot").read_bytes()
        creds = grpc.ssl_server_credentials([(key, cert)], files.root.read_bytes(), require_client_auth=True)
        port = srv.add_secure_port("127.0.0.1:0", creds)
    await srv.start()
    suite = await _negotiated_suite(port, files) if files is not None else None
    argv = [sys.executable, "-m", "benchmarks.xds.grpcsend", "--client", str(port), *sys.argv[1:]]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, preexec_fn=lambda: os.nice(10)
    )
    assert proc.stdout is not None
    cpus: list[float] = []
    mark = _cpu()
    while line := await proc.stdout.readline():
        now = _cpu()
        if line.startswith(b"round"):
            cpus.append(now - mark)
        mark = now
    await proc.wait()
    await srv.stop(None)
    return cpus, suite


def _option(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    return name, int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--size", type=int, default=418_384, help="bytes of the one message")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=INT")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        files = TlsFiles(Path(args.tls_dir)) if args.tls else None
        asyncio.run(client(args.client, files, args.streams, args.rounds))
        return
    files = None
    if args.tls:
        args.tls_dir = tempfile.mkdtemp(prefix="grpcsend-")
        files = write_tls_files(Path(args.tls_dir))
        sys.argv += ["--tls-dir", args.tls_dir]
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cpus, suite = asyncio.run(server(args, files))
    if not cpus:
        raise SystemExit("the client process ended before any round (its error is above)")
    each = " ".join(f"{c:.3f}" for c in sorted(cpus))
    print(
        f"{'mutual TLS' if files else 'plaintext'}{f' ({suite})' if suite else ''}, "
        f"{args.streams} streams x {args.size} bytes, options {dict(args.option) or 'none'}: "
        f"server cpu per round median {statistics.median(cpus):.3f}s ({each}), "
        f"{args.streams * args.size / statistics.median(cpus) / 1e9:.2f} GB/s"
    )


if __name__ == "__main__":
    main()
