"""The monitoring port: ``/ready`` (200 once serving, else 503) and ``/metrics`` (Prometheus text).

A deliberately small HTTP/1.1 responder on asyncio streams (no ASGI server to import at every start
of Citadel and each node agent): two fixed GET endpoints, no body parsing, one request per
connection. The answers are the shared ones (:mod:`meshplane.shared.health`), as every service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from meshplane.shared.health import metrics_response, ready_response

log = logging.getLogger(__name__)


class MonitoringServer:
    def __init__(self, registry: CollectorRegistry, is_ready: Callable[[], bool]) -> None:
        self._registry = registry
        self._is_ready = is_ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _respond(self, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if path == "/ready":
            status, text = ready_response(lambda: None if self._is_ready() else "")
            return status, "text/plain; charset=utf-8", text.encode()
        if path == "/metrics":
            body, content_type = metrics_response(self._registry)
            return 200, content_type, body
        return 404, "text/plain", b"not found: try /ready or /metrics\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request_line = (await reader.readline()).decode("latin-1").split()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            if len(request_line) < 2 or request_line[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET is supported\n"
            else:
                status, ctype, body = self._respond(request_line[1])
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
            head = (
                f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if request_line[:1] != ["HEAD"] else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("monitoring request dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
