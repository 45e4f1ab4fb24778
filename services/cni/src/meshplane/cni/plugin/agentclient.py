"""The plugin's side of the node-agent protocol: tiny HTTP/1.0 over the agent's Unix socket.

Written on a bare socket (no ``http.client``) so the plugin's start-up stays cheap.  Endpoints:
``GET /v1/pods/<namespace>/<name>`` (pod metadata, 404 when unknown) and ``POST /v1/events``
(the plugin reports what it did).
"""

from __future__ import annotations

import json
import socket

TIMEOUT_SECONDS = 5.0


class AgentUnavailable(OSError):
    """The agent's socket cannot be reached or answered garbage."""


def _request(socket_path: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    head = f"{method} {target} HTTP/1.0\r\nHost: meshplane-cni-agent\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_SECONDS)
            sock.connect(socket_path)
            sock.sendall(head.encode() + b"\r\n" + body)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise AgentUnavailable(f"cannot reach the node agent at {socket_path}: {exc}") from None
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise AgentUnavailable(f"node agent at {socket_path} sent a malformed response")
    return int(status_line[1]), payload


def fetch_pod(socket_path: str, namespace: str, name: str) -> dict[str, object] | None:
    """The agent's metadata for a pod, or ``None`` when the agent does not know it."""
    for part in (namespace, name):  # Kubernetes names: DNS labels/subdomains, safe in a URL path
        if not part or not all(c.isascii() and (c.isalnum() or c in "-.") for c in part):
            raise ValueError(f"{part!r} is not a Kubernetes name")
    status, payload = _request(socket_path, "GET", f"/v1/pods/{namespace}/{name}")
    if status == 404:
        return None
    if status != 200:
        raise AgentUnavailable(f"node agent answered {status}: {payload[:200]!r}")
    try:
        data = json.loads(payload)
    except ValueError:
        raise AgentUnavailable("node agent sent a pod that is not JSON") from None
    if not isinstance(data, dict):
        raise AgentUnavailable("node agent sent a pod that is not a JSON object")
    return data


def health(socket_path: str) -> dict[str, object]:
    """The agent's ``/healthz`` document."""
    status, payload = _request(socket_path, "GET", "/healthz")
    data = json.loads(payload) if status == 200 else {}
    return data if isinstance(data, dict) else {}


def report(socket_path: str, event: dict[str, object]) -> None:
    """Tell the agent what the plugin did (best effort: the caller decides what a failure means)."""
    _request(socket_path, "POST", "/v1/events", json.dumps(event).encode())
