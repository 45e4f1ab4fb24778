"""The ``/ready`` + ``/metrics`` HTTP surface every service serves: one implementation.

``/ready`` answers 200 ``ready`` once the service is serving, else 503 ``not ready`` with the reason
when it has one; ``/metrics`` is the Prometheus text of the service's registry. The Starlette routes
from :func:`health_routes` are mounted by the services on Starlette or FastAPI, next to their own
routes; a service with a plain asyncio responder (Citadel's monitoring port) answers with
:func:`ready_response` and :func:`metrics_response`, so the bodies and status codes are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from meshplane.shared.telemetry.counters import exposition

log = logging.getLogger(__name__)

#: Why the service is not ready (``""`` when it has no reason to give), or None when it is ready.
NotReady = Callable[[], str | None]


def ready_response(not_ready: NotReady) -> tuple[int, str]:
    """The status code and text body of ``/ready``."""
    reason = not_ready()
    if reason is None:
        return 200, "ready\n"
    return 503, f"not ready: {reason}\n" if reason else "not ready\n"


def metrics_response(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of ``/metrics`` (Istio's counter names kept, see
    :mod:`meshplane.shared.telemetry.counters`)."""
    return exposition(registry), CONTENT_TYPE_LATEST


def health_routes(
    registry: CollectorRegistry, not_ready: NotReady, *, ready_paths: Sequence[str] = ("/ready",)
) -> list[Route]:
    """Starlette routes for ``/ready`` (at each of ``ready_paths``) and ``/metrics``.

    The handlers are ``async def``: they run on the event loop, where the service's state lives.
    """

    async def ready(_: Request) -> Response:
        status, body = ready_response(not_ready)
        return PlainTextResponse(body, status_code=status)

    async def metrics(_: Request) -> Response:
        body, content_type = metrics_response(registry)
        return Response(body, media_type=content_type)

    return [
        *(Route(path, ready, methods=["GET"]) for path in ready_paths),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class MonitoringServer:
    """``/ready`` and ``/metrics`` on a plain asyncio HTTP/1.1 responder (no ASGI server to import).

    For services without an ASGI app of their own: two fixed GET endpoints, no body parsing, one
    request per connection, the same answers as :func:`health_routes`.
    """

    def __init__(self, registry: CollectorRegistry, not_ready: NotReady) -> None:
        self._registry = registry
        self._not_ready = not_ready
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
            status, text = ready_response(self._not_ready)
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
