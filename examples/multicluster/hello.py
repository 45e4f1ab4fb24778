"""The multicluster example's app (stdlib only): answers with its version and its cluster.

``GET /`` answers ``helloworld v1 in cluster1 (network1)`` and, when its sidecar forwarded the
caller's certificate (``x-forwarded-client-cert``, set by Envoy for mutual TLS), the caller's
SPIFFE ID on a second line, so one curl shows which cluster answered and who called it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal


class Hello:
    def __init__(self, label: str) -> None:
        self.label = label

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        text = head.decode(errors="replace")
        body = self.label
        xfcc = re.search(r"(?im)^x-forwarded-client-cert:.*?URI=([^;,\r\n]+)", text)
        if xfcc:
            body += f"\ncaller {xfcc.group(1)}"
        payload = (body + "\n").encode()
        served_by = self.label.split(" (")[0].replace(" ", "-")
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {len(payload)}\r\n"
            f"x-served-by: {served_by}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    app = Hello(f"helloworld {args.version} in {args.cluster} ({args.network})")
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
    parser.add_argument("--version", default="v1")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--network", default="")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
