"""The webhook's limits on a real galley process: an oversized body gets 413 while galley's memory
stays under its limit, a body that does not arrive in time gets 408, and galley keeps reviewing.

The 160 MB body is the one that pushed an unlimited galley past its 512 Mi memory limit (issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest

from meshplane.shared.natsserver import NatsServer

from .process import GalleyProcess, run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MIB = 1024 * 1024
#: galley's memory limit in k8s/ (k8s/base/galley/galley.yaml)
MEMORY_LIMIT = 512 * MIB
HUGE = 160 * 1000 * 1000


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def review(name: str) -> bytes:
    obj = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
    }
    request = {
        "uid": "u-1",
        "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
        "operation": "CREATE",
        "namespace": "default",
        "name": name,
        "object": obj,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def head(port: int, extra: str) -> bytes:
    return (
        f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _exchange(port: int, header: bytes, body_chunks: int, chunk: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):  # galley closes the connection once it has answered
                sock.sendall(header)
                for _ in range(body_chunks):
                    sock.sendall(chunk)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = b""
        with contextlib.suppress(OSError):  # data already received stays readable after a reset
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # ends a send still in progress
        sender.join(60)
    assert data.startswith(b"HTTP/1.1 "), f"no HTTP answer: {data[:200]!r}"
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30  # read until the server closes


async def exchange(port: int, header: bytes, body_chunks: int = 0, chunk: bytes = b"") -> tuple[int, bytes]:
    """Send ``header`` and then up to ``body_chunks`` chunks while reading the answer at the same
    time (as a client must when the server answers early); return the status and the body."""
    return await asyncio.to_thread(_exchange, port, header, body_chunks, chunk)


async def assert_still_reviews(galley: GalleyProcess) -> None:
    body = review("ok")
    status, answer = await exchange(
        galley.webhook_port, head(galley.webhook_port, f"Content-Length: {len(body)}\r\n") + body
    )
    assert status == 200, answer
    assert b'"allowed":true' in answer


async def test_oversized_bodies_get_413_and_galley_memory_stays_bounded(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with run_galley(nats_server.url, tmp_path, tmp_path / "galley.log") as galley:
        await galley.wait_ready()
        port = galley.webhook_port
        before = peak_rss(galley.proc.pid)
        # declared too large: refused before a byte of the body is read
        status, answer = await exchange(port, head(port, f"Content-Length: {HUGE}\r\n"), 4, b"x" * MIB)
        assert status == 413, answer
        assert b"4194304 bytes" in answer
        # not declared (chunked): refused once it passes the limit, the rest never read
        mib_chunk = f"{MIB:x}\r\n".encode() + b"x" * MIB + b"\r\n"
        status, answer = await exchange(
            port, head(port, "Transfer-Encoding: chunked\r\n"), HUGE // MIB, mib_chunk
        )
        assert status == 413, answer
        await assert_still_reviews(galley)
        after = peak_rss(galley.proc.pid)
        assert after < MEMORY_LIMIT, f"galley's peak RSS reached {after / MIB:.0f} MiB"
        assert after - before < 64 * MIB, f"peak RSS grew {(after - before) / MIB:.0f} MiB for a refused body"
        assert 'galley_validation_http_error{status="413"} 2.0' in await metrics(galley)


async def test_a_body_that_does_not_arrive_in_time_gets_408(nats_server: NatsServer, tmp_path: Path) -> None:
    with run_galley(
        nats_server.url, tmp_path, tmp_path / "galley.log", "--webhook-read-timeout", "1s"
    ) as galley:
        await galley.wait_ready()
        port = galley.webhook_port
        body = review("slow")
        # half the declared body, then nothing: galley answers on its own after its read timeout
        status, answer = await exchange(
            port, head(port, f"Content-Length: {len(body)}\r\n") + body[: len(body) // 2]
        )
        assert status == 408, answer
        assert b"did not arrive within 1s" in answer
        await assert_still_reviews(galley)


async def metrics(galley: GalleyProcess) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(galley.monitoring + "/metrics")).text
