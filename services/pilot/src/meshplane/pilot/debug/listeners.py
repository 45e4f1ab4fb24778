"""Where Pilot's HTTP routes are served: monitoring for the cluster, ``/debug`` local-only.

Two listeners, as istiod has (monitoring on 15014, debug HTTP on localhost:8080):

- **monitoring** (``--http-addr``, 15014): ``/ready``, ``/metrics`` and the read-only
  ``/debug/syncz``. Kubernetes binds it to every interface for probes and Prometheus, and
  ``meshctl proxy-status --kubeconfig`` reads ``/debug/syncz`` there through the API server's pod
  proxy, which can only reach the pod's address, never its loopback. syncz carries what
  ``istioctl proxy-status`` prints (proxy names, per-type sync state and versions), no config.
- **debug** (``--debug-addr``, default ``127.0.0.1:8080``): every route, so every ``/debug``
  endpoint, including any added later, is local-only unless it is listed in
  :data:`MONITORING_DEBUG`.

The same address for both serves everything on one listener.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

log = logging.getLogger("meshplane.pilot")

#: the /debug endpoints also served on the monitoring port (read-only, no config)
MONITORING_DEBUG = frozenset({"/debug/syncz"})


def _on_monitoring(route: BaseRoute) -> bool:
    path = route.path if isinstance(route, Route) else ""
    return not (path == "/debug" or path.startswith("/debug/")) or path in MONITORING_DEBUG


def monitoring_app(app: Starlette) -> Starlette:
    """``app`` without its ``/debug`` routes, except those in :data:`MONITORING_DEBUG`."""
    return Starlette(routes=[r for r in app.routes if _on_monitoring(r)])


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's stop event owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Listener:
    """One bound HTTP listener; ``serve`` runs it until ``stop``."""

    flag: str
    server: uvicorn.Server
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        except SystemExit:  # uvicorn's way of saying it could not start
            raise RuntimeError(f"the HTTP server on {self.flag} could not start") from None
        if not self.server.should_exit:
            raise RuntimeError(f"the HTTP server on {self.flag} stopped on its own")

    def stop(self) -> None:
        self.server.should_exit = True


def bind(app: Starlette, host: str, port: int, flag: str) -> Listener:
    """Bind ``host:port`` now, so a taken port is one clear line and exit code 1."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        log.error("cannot listen on %s:%d for HTTP (%s): %s", host, port, flag, exc)
        raise SystemExit(1) from None
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    return Listener(flag, _QuietServer(config), sock)


def bind_all(app: Starlette, monitoring: tuple[str, int], debug: tuple[str, int]) -> list[Listener]:
    """The monitoring listener, then the debug one; one listener serving everything when both
    addresses are the same (and not port 0, which means two ports of the system's choosing)."""
    if monitoring == debug and monitoring[1] != 0:
        return [bind(app, *monitoring, "--http-addr and --debug-addr")]
    first = bind(monitoring_app(app), *monitoring, "--http-addr")
    try:
        return [first, bind(app, *debug, "--debug-addr")]
    except SystemExit:
        first.sock.close()
        raise
