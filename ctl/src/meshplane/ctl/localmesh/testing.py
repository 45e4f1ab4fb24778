"""Run ``meshctl up`` on a relocated copy of ``examples/`` for tests and benchmarks.

``copy_example`` copies the examples and rewrites the bookinfo example's loopback prefixes, app
ports and gateway port to fresh ones, so a run never collides with a ``make run`` on the same
machine. ``running_up`` starts the real command as a subprocess, waits for "meshplane is up",
and at exit sends SIGINT (as Ctrl-C does), then SIGKILLs any process group it printed that is left.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from meshplane.shared.natsserver import free_port

MESHCTL = Path(sys.executable).parent / "meshctl"


def copy_example(examples: Path, tmp: Path) -> tuple[Path, int]:
    """Copy ``examples/bookinfo`` alone to ``tmp/my-mesh`` with fresh addresses; return (it, gateway port).

    Only that directory is copied, as a user would copy it (README: ``cp -r examples/bookinfo
    /tmp/my-mesh``), so every run also shows that the example is self-contained.
    """
    config = tmp / "my-mesh"
    shutil.copytree(examples / "bookinfo", config, ignore=shutil.ignore_patterns("__pycache__"))
    a, b = random.randint(30, 250), random.randint(0, 125)
    subs = {"127.0.10.": f"127.{a}.{2 * b}.", "127.0.20.": f"127.{a}.{2 * b + 1}."}
    *app_ports, gateway_port = (free_port() for _ in range(6))  # below the ephemeral range
    subs |= {f"127.0.0.1:1900{n}": f"127.0.0.1:{port}" for n, port in enumerate(app_ports, 1)}
    subs["number: 8080"] = f"number: {gateway_port}"
    for path in config.glob("*.yaml"):
        text = path.read_text()
        for old, new in subs.items():
            text = text.replace(old, new)
        path.write_text(text)
    return config, gateway_port


@dataclass
class UpRun:
    proc: subprocess.Popen[str]
    config: Path
    state: Path
    gateway: str
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def pids(self) -> dict[str, int]:
        """Component → PID from the table ``meshctl up`` printed."""
        found = {}
        for line in self.lines:
            m = re.match(r"^(\S+)\s+(\d+)\s{2}", line)
            if m and m.group(1) != "COMPONENT":
                found[m.group(1)] = int(m.group(2))
        return found

    def current_pids(self) -> dict[str, int]:
        """Component → PID now: the table's, or the one its last "restarted as pid N" line gave."""
        found = self.pids()
        for line in list(self.lines):
            m = re.match(r"meshctl up: (\S+) restarted as pid (\d+)", line)
            if m and m.group(1) in found:
                found[m.group(1)] = int(m.group(2))
        return found

    def nats_url(self) -> str:
        m = re.search(r"proxy-status --nats-url (\S+)", self.output())
        if not m:
            raise AssertionError(f"no bus URL in the output:\n{self.output()}")
        return m.group(1)


@contextmanager
def running_up(
    examples: Path, tmp: Path, start_timeout: float = 150.0, env: dict[str, str] | None = None
) -> Iterator[UpRun]:
    config, gateway_port = copy_example(examples, tmp)
    state = tmp / "state"
    proc = subprocess.Popen(
        [str(MESHCTL), "up", "--config-dir", str(config), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
        env=env,
    )
    run = UpRun(proc, config, state, f"http://127.0.0.1:{gateway_port}/")
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: run.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + start_timeout
        while "meshplane is up" not in run.output() and proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"meshctl up not up after {start_timeout}s:\n{run.output()}")
            time.sleep(0.05)
        if proc.poll() is not None:
            raise AssertionError(f"meshctl up exited with {proc.returncode}:\n{run.output()}")
        yield run
    finally:
        pids = run.current_pids()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids.values():  # only if meshctl up failed to clean up; tests check it did
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reader.join(5)
        stdout.close()
