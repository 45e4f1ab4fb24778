"""A live webhook server (uvicorn, one worker) under a stream of bad requests keeps answering.

Random bodies, truncated JSON, invalid UTF-8, a 5 MB body and garbage that is not even HTTP are
sent over raw sockets; no answer is a 5xx and a valid review is still answered afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from meshplane.galley.api.apps import create_webhook_app
from meshplane.galley.api.server import HttpServer
from meshplane.galley.api.state import GalleyState

from .reviews import review, virtual_service

pytestmark = pytest.mark.timeout(120)


def _post(body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"POST /validate HTTP/1.1\r\nHost: galley\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(port: int, raw: bytes) -> int | None:
    """Send raw bytes; return the HTTP status, or None when the server closed without answering.

    A body over 1 MB is sent as a careful client does (``Expect: 100-continue``): the webhook
    refuses an oversized body from its headers alone (413), without reading it."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if sep and len(body) > 1_000_000:
            writer.write(head + b"\r\nExpect: 100-continue" + sep)
            await writer.drain()
            first = await asyncio.wait_for(reader.readline(), 20)
            if not first.startswith(b"HTTP/1.1 100"):
                return _status(first)
            await reader.readline()  # the blank line ending the interim response
        writer.write(body if sep and len(body) > 1_000_000 else raw)
        await writer.drain()
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    return _status(data)


def _status(data: bytes) -> int | None:
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def _bad_bodies(rng: random.Random) -> list[bytes]:
    valid = json.dumps(review(virtual_service(routes=3))).encode()
    bodies = [rng.randbytes(rng.randint(1, 400)) for _ in range(40)] + [
        valid[: rng.randint(1, len(valid) - 1)] for _ in range(40)
    ]
    bodies += [b"\xff\xfe\x00{", b"{}" * 10, b'{"apiVersion": 1}', b"null", b'"x"', b" " * 1000]
    bodies.append(
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "'
        + b"a" * 5_000_000
        + b'"}}'
    )
    nested = b"[" * 100_000 + b"]" * 100_000
    bodies.append(nested)
    return bodies


async def test_bad_requests_never_5xx_and_server_keeps_serving() -> None:
    server = HttpServer(create_webhook_app(GalleyState(ready=True)), "127.0.0.1", 0, name="webhook")
    await server.start()
    try:
        rng = random.Random(20251125)
        statuses = []
        for body in _bad_bodies(rng):
            statuses.append(await _exchange(server.port, _post(body)))
        statuses.append(await _exchange(server.port, _post(b"{}", "text/plain")))
        for garbage in (
            b"\x16\x03\x01\x02\x00" + rng.randbytes(100),
            b"GET\r\n\r\n",
            b"POST /validate HTTP/9.9\r\n\r\n",
        ):
            statuses.append(await _exchange(server.port, garbage))
        answered = [s for s in statuses if s is not None]
        assert answered, statuses
        assert all(s < 500 for s in answered), statuses
        assert statuses.count(400) >= 80
        valid = json.dumps(review(virtual_service(), uid="still-alive")).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_post(valid))
        data = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert b" 200 " in data.split(b"\r\n", 1)[0]
        assert b'"uid":"still-alive"' in data
        assert b'"allowed":true' in data
    finally:
        await server.stop()
