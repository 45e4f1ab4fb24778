"""A tiny bookinfo-like HTTP app for the local mesh (stdlib only).

Each instance answers with its own name and version and, when given ``--call``, first asks the
next service through its sidecar and appends that answer::

    productpage v1 -> reviews v2 -> ratings v1

``--call host=URL`` sends ``GET URL`` with ``Host: host`` (the sidecar routes on it). Responses
are plain text so ``curl`` shows the chain; ``/health`` answers ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import urllib.parse


async def fetch(url: str, host: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, str]:
    """A minimal HTTP/1.1 GET (no keep-alive) returning (status, body)."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port or 80), timeout
    )
    try:
        lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 502
    return status, body.decode(errors="replace").strip()


#: Request headers passed on to the next hop so header-based routing works end to end.
PROPAGATE = ("end-user", "x-request-id", "traceparent", "tracestate")


class App:
    def __init__(self, name: str, version: str, calls: list[tuple[str, str]]) -> None:
        self.label = f"{name} {version}"
        self.calls = calls

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        request_line, *header_lines = head.decode(errors="replace").split("\r\n")
        path = request_line.split(" ")[1] if " " in request_line else "/"
        headers = {}
        for line in header_lines:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        status, body = 200, self.label
        if path == "/health":
            body = "ok"
        else:
            for host, url in self.calls:
                passed = {k: v for k, v in headers.items() if k in PROPAGATE}
                try:
                    code, answer = await fetch(url, host, passed)
                except (OSError, TimeoutError) as exc:
                    code, answer = 503, f"{host} unreachable ({exc})"
                body += f" -> {answer}" if code == 200 else f" -> [{host}: {code} {answer}]"
        payload = (body + "\n").encode()
        writer.write(
            f"HTTP/1.1 {status} OK\r\ncontent-type: text/plain\r\ncontent-length: {len(payload)}\r\n"
            f"x-served-by: {self.label.replace(' ', '-')}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    calls = [tuple(c.split("=", 1)) for c in args.call]
    app = App(args.name, args.version, [(h, u) for h, u in calls])
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(app.handle, host or "127.0.0.1", int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument(
        "--call", action="append", default=[], help="HOST=URL of the next hop (via the sidecar)"
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
