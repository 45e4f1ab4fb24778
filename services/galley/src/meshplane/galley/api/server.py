"""Run an ASGI app on uvicorn inside galley's event loop, optionally over TLS with hot reload.

uvicorn's own signal handling is switched off: the process's stop event (``shared.lifecycle``)
decides when to shut down. With TLS, the certificate and key files are watched and loaded into
the live ``SSLContext``, so new connections use the new pair without a restart.

Given a :class:`~meshplane.shared.tasks.TaskSupervisor`, the server is watched by a fatal task
(a server that stops serving on its own ends the process, whose supervisor restarts it) and the
TLS reloader runs as a restartable task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Generator
from pathlib import Path

import uvicorn
import watchfiles
from fastapi import FastAPI

from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger("meshplane.galley.server")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # galley's lifecycle owns the signals


class HttpServer:
    """One uvicorn server; ``start`` returns when it listens, ``stop`` drains and closes it."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        name: str,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.name = name
        self._tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
        self._tls_dirs = {p.absolute().parent for p in self._tls or ()}
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._stop_reload = asyncio.Event()
        self._stopping = False

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError(f"{self.name} server is not listening")

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        # The serve task is this object's own: awaited by stop(), watched by the supervisor.
        self._task = asyncio.create_task(self._server.serve(), name=f"http-{self.name}")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the bind error
                raise RuntimeError(f"{self.name} server exited during startup")
            await asyncio.sleep(0.01)
        if supervisor is not None:
            supervisor.spawn(f"http-{self.name}", self.watch, restart=False)
        if self._tls is not None:
            cert, key = self._tls
            if supervisor is not None:
                supervisor.spawn(f"tls-reload-{self.name}", lambda: self._watch_tls(cert, key))
            else:
                reload = self._watch_tls(cert, key)
                self._reloader = asyncio.create_task(reload, name=f"tls-reload-{self.name}")
        log.info("%s listening on port %d%s", self.name, self.port, " (TLS)" if self._tls else "")

    async def watch(self) -> None:
        """Return only when cancelled; raise if the server stops serving before :meth:`stop`."""
        assert self._task is not None
        await asyncio.shield(self._task)
        if not self._stopping:
            raise RuntimeError(f"{self.name} server stopped serving on its own")
        await asyncio.Event().wait()  # stopping: wait to be cancelled with the other tasks

    async def _watch_tls(self, cert: Path, key: Path) -> None:
        context = self._server.config.ssl
        if not isinstance(context, ssl.SSLContext):
            return
        async for _ in watchfiles.awatch(
            *self._tls_dirs, stop_event=self._stop_reload, debounce=200, step=50
        ):
            try:
                context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                log.warning(
                    "%s: could not reload TLS files %s, %s (keeping the old pair): %s",
                    self.name,
                    cert,
                    key,
                    exc,
                )
            else:
                log.info("%s: reloaded TLS certificate %s", self.name, cert)

    async def stop(self) -> None:
        self._stopping = True
        self._stop_reload.set()
        self._server.should_exit = True
        for task in (self._task, self._reloader):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
