"""Run ``meshplane-galley`` as a subprocess on free ports; stop it by PID, never leave it behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.polling import eventually

BIN = Path(sys.executable).parent


@dataclass
class GalleyProcess:
    child: ChildProcess
    webhook_port: int
    monitoring_port: int
    debug_port: int
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    @property
    def monitoring(self) -> str:
        return f"http://127.0.0.1:{self.monitoring_port}"

    @property
    def debug(self) -> str:
        """/debug/sources and /debug/analyze (--debug-addr)."""
        return f"http://127.0.0.1:{self.debug_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(self.debug + path)
        resp.raise_for_status()
        return resp.json()

    async def wait_ready(self, timeout: float = 60) -> None:
        async def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"galley exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(self.monitoring + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, "galley to become ready", timeout)
        assert '"msg": "ready"' in self.log_text(), "readyz is 200 but 'ready' was not logged first"

    def stop(self) -> int | None:
        return self.child.stop(15)


@contextmanager
def run_galley(
    nats_url: str, config_dir: Path | None, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[GalleyProcess]:
    """``env``: added to this process's environment (e.g. another cluster's ``MESHPLANE_BUS_DIR``)."""
    webhook, monitoring, debug = free_port(), free_port(), free_port()
    source = ["--config-dir", str(config_dir)] if config_dir is not None else []
    argv = [
        str(BIN / "meshplane-galley"),
        "--nats-url",
        nats_url,
        *source,
        "--webhook-addr",
        f"127.0.0.1:{webhook}",
        "--monitoring-addr",
        f"127.0.0.1:{monitoring}",
        "--debug-addr",
        f"127.0.0.1:{debug}",
        *extra,
    ]
    child = ChildProcess(argv, log, env=env, name="galley")
    child.start()
    galley = GalleyProcess(child, webhook, monitoring, debug, log)
    try:
        yield galley
    finally:
        galley.stop()
