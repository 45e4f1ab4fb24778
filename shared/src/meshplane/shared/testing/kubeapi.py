"""A tiny local HTTP server that replays recorded Kubernetes API responses (lists and watch streams).

Each path has a queue of list bodies (the last one repeats) and a queue of watch streams (lists
of events sent chunked, one JSON per line, then the stream ends); when the watch queue is empty
the watch is held open until the server stops. Every request is recorded for assertions.
PATCH/POST/PUT answer from a per-(method, path) queue (the last one repeats) and their
bodies and content types are recorded in ``writes``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class RecordedAPI:
    def __init__(self) -> None:
        self.lists: dict[str, list[tuple[int, Any]]] = {}
        self.watches: dict[str, list[list[dict[str, Any]] | int]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.responses: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.writes: list[tuple[str, str, str, Any]] = []
        self.closing = threading.Event()
        self.lock = threading.Lock()

    def add_list(self, path: str, body: Any, status: int = 200) -> None:
        self.lists.setdefault(path, []).append((status, body))

    def add_response(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """An answer to a PATCH/POST/PUT of ``path`` (queued; the last one repeats)."""
        self.responses.setdefault((method, path), []).append((status, body))

    def written(self, method: str, path: str) -> list[Any]:
        """The JSON bodies sent with ``method`` to ``path``, in order."""
        with self.lock:
            return [b for m, p, _, b in self.writes if m == method and p == path]

    def add_watch(self, path: str, events: list[dict[str, Any]] | int) -> None:
        """A stream of events, or an HTTP status to answer the watch with."""
        self.watches.setdefault(path, []).append(events)

    def requested(self, path: str, watch: bool) -> list[dict[str, str]]:
        with self.lock:
            return [q for p, q in self.requests if p == path and (q.get("watch") == "true") == watch]


def _handler(api: RecordedAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with api.lock:
                api.requests.append((url.path, query))
            if query.get("watch") == "true":
                self._watch(url.path)
                return
            queue = api.lists.get(url.path)
            if not queue:
                self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "the server could not find the requested resource",
                                 "reason": "NotFound", "code": 404})  # fmt: skip
                return
            with api.lock:
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
            self._json(status, body)

        def _write(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with api.lock:
                api.writes.append((self.command, url.path, self.headers.get("Content-Type", ""), body))
                queue = api.responses.get((self.command, url.path))
                answer = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
            if answer is None:
                self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "the server could not find the requested resource",
                                 "reason": "NotFound", "code": 404})  # fmt: skip
                return
            self._json(*answer)

        do_PATCH = do_POST = do_PUT = _write  # noqa: N815 (http.server's naming)

        def _watch(self, path: str) -> None:
            with api.lock:
                queue = api.watches.get(path) or []
                events = queue.pop(0) if queue else None
            if isinstance(events, int):
                self._json(
                    events, {"kind": "Status", "apiVersion": "v1", "code": events, "status": "Failure"}
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in events or []:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                if events is None:
                    api.closing.wait()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass

    return Handler


@contextmanager
def serve(api: RecordedAPI) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="recorded-kube-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        api.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
