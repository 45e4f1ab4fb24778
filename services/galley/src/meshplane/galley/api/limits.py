"""Limits on the webhook port: body size, time to read the body, concurrent requests.

The Kubernetes API server sends an AdmissionReview of at most about 3 MB: an object is at most
1.5 MiB (etcd's request limit) and an UPDATE carries the object and its old version. Galley
therefore reads at most :data:`DEFAULT_MAX_BODY` (4 MiB, room for the review's envelope) per
request; a body that declares more is answered ``413`` before any of it is read, and one that
sends more (chunked) is answered ``413`` as soon as it passes the limit, without reading the
rest. A body that has not fully arrived within the read timeout is answered ``408``. At most
``max_concurrent`` requests with a body are read and reviewed at once; the others wait for a
slot as long as the read timeout (uvicorn stops reading a waiting connection's socket after 64
KiB), then get ``503``. Memory held by request bodies is thus bounded by
``max_concurrent x max_body``, whatever clients send. Every refusal closes the connection and is
counted in ``galley_validation_http_error{status}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshplane.galley import metrics

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_CONCURRENT = 16


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = DEFAULT_MAX_BODY
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyLimits:
    """ASGI middleware applying :class:`Limits` to every request that has a body."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            self._check_declared_length(scope)
            await self._acquire()
        except _Refused as exc:
            await _refuse(send, exc)
            return
        try:
            try:
                body = await self._read(receive)
            except _Refused as exc:
                await _refuse(send, exc)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self._slots.release()

    def _check_declared_length(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _Refused(
                        400, f"invalid Content-Length {value.decode(errors='replace')!r}"
                    ) from None
                if length > self.limits.max_body:
                    raise _Refused(413, self._too_large(f"Content-Length {length}"))

    async def _acquire(self) -> None:
        if not self._slots.locked():
            # a free slot is taken without yielding to the loop: uvicorn turns a half-close that
            # arrives meanwhile into a disconnect, and the body it already holds would be lost
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self.limits.read_timeout)
        except TimeoutError:
            raise _Refused(
                503, f"busy: {self.limits.max_concurrent} requests are being reviewed; retry"
            ) from None

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Refused(400, "the client went away before sending its whole body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body:
                        raise _Refused(413, self._too_large("the body"))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(
                408, f"the request body did not arrive within {self.limits.read_timeout:g}s"
            ) from None

    def _too_large(self, what: str) -> str:
        return (
            f"{what} exceeds the webhook's limit of {self.limits.max_body} bytes "
            "(an AdmissionReview from Kubernetes is at most about 3 MB)"
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving the app the whole body once, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, exc: _Refused) -> None:
    metrics.VALIDATION_HTTP_ERROR.labels(str(exc.status)).inc()
    headers: list[Any] = [(b"content-type", b"text/plain"), (b"connection", b"close")]
    if exc.status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": f"{exc}\n".encode()})
