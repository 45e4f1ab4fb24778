"""The agent's Unix-socket HTTP endpoint the plugin talks to (tiny HTTP/1.0, one request each).

``GET /v1/pods/<ns>/<name>`` → pod metadata JSON (404 when unknown after a short wait),
``POST /v1/events`` → the plugin's report of an ADD/DEL (204 once queued: the plugin never waits
for the bus; :meth:`AgentServer.dispatch_events` hands them on), ``GET /healthz`` → 200.  The
socket is created mode 0600: only root (the runtime running the plugin) may ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from meshplane.cni.agent.podcache import PodCache

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
EVENT_QUEUE_SIZE = 1000


class AgentServer:
    """Serves pod metadata and takes plugin events on a Unix socket."""

    def __init__(
        self,
        socket_path: Path,
        cache: PodCache,
        on_event: EventHandler,
        pod_wait: float = 2.0,
        status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.cache = cache
        self.on_event = on_event
        self.pod_wait = pod_wait
        self.status = status or dict
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE_SIZE)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Listen on the socket while the context is open; remove it afterwards."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path))
        finally:
            os.umask(old)
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()
            self.socket_path.unlink(missing_ok=True)

    async def dispatch_events(self) -> None:
        """Hand queued plugin events to the handler, one at a time, until cancelled."""
        while True:
            event = await self.events.get()
            try:
                await self.on_event(event)
            except Exception:
                log.exception("handling plugin event %s failed", event.get("type"))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                status, body = await self._respond(reader)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            status, body = 400, {"error": f"bad request: {exc}"}
        payload = b"" if status == 204 else json.dumps(body).encode()
        head = f"HTTP/1.0 {status} {REASONS.get(status, '')}\r\nContent-Length: {len(payload)}\r\n"
        head += "Content-Type: application/json\r\n\r\n" if payload else "\r\n"
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readline()).decode("latin-1").split()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(request_line) < 2 or length > MAX_BODY:
            raise ValueError("malformed request line or body too large")
        method, target = request_line[0], request_line[1]
        body = await reader.readexactly(length) if length else b""
        parts = [unquote(p) for p in target.split("?", 1)[0].strip("/").split("/")]
        if parts == ["healthz"]:
            return 200, {"status": "ok", "synced": self.cache.synced.is_set(), **self.status()}
        if len(parts) == 4 and parts[:2] == ["v1", "pods"]:
            if method != "GET":
                return 405, {"error": "use GET"}
            pod = await self.cache.wait_for(parts[2], parts[3], self.pod_wait)
            if pod is None:
                return 404, {"error": f"pod {parts[2]}/{parts[3]} not known on this node"}
            return 200, pod.to_json()
        if parts == ["v1", "events"]:
            if method != "POST":
                return 405, {"error": "use POST"}
            event = json.loads(body or b"null")
            if not isinstance(event, dict):
                return 400, {"error": "event must be a JSON object"}
            try:
                self.events.put_nowait(event)
            except asyncio.QueueFull:
                return 503, {"error": "agent event queue is full"}
            return 204, None
        return 404, {"error": f"no route {target}"}
