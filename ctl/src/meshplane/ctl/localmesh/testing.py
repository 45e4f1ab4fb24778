"""Run ``meshctl up`` on a relocated copy of ``examples/`` for tests and benchmarks.

``copy_example`` copies the examples and rewrites the bookinfo example's loopback prefixes, app
ports and gateway port to fresh ones, so a run never collides with a ``make run`` on the same
machine. ``running_up`` starts the real command as a ``ChildProcess`` (its output in
``<tmp>/meshctl-up.log``), waits for "meshplane is up", and at exit stops it (SIGTERM, which
``meshctl up`` handles as Ctrl-C), then SIGKILLs any process group it printed that is left.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildExited, ChildProcess

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
    child: ChildProcess
    config: Path
    state: Path
    gateway: str

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    @property
    def lines(self) -> list[str]:
        """Every line ``meshctl up`` printed so far (stdout and stderr), each with its newline."""
        return self.child.log_text().splitlines(keepends=True)

    def output(self) -> str:
        return self.child.log_text()

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
        for line in self.lines:
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
    examples: Path,
    tmp: Path,
    start_timeout: float = 150.0,
    env: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[UpRun]:
    """``env``, when given, is the whole environment of ``meshctl up``; ``extra`` adds files (name
    -> YAML) to the copied config directory; ``args`` are more options of ``meshctl up``."""
    config, gateway_port = copy_example(examples, tmp)
    for name, text in (extra or {}).items():
        (config / name).write_text(text)
    gateway = f"http://127.0.0.1:{gateway_port}/"
    with running(config, tmp / "state", tmp, gateway, start_timeout, env, args) as run:
        yield run


def copy_multicluster(examples: Path, tmp: Path) -> tuple[Path, int]:
    """Copy ``examples/multicluster`` to ``tmp/mc`` with fresh network ranges and ports; return
    (it, the ingress gateway's port)."""
    config = tmp / "mc"
    shutil.copytree(examples / "multicluster", config, ignore=shutil.ignore_patterns("__pycache__"))
    a, b = random.randint(30, 250), random.randint(0, 125)
    subs = {"127.0.1.": f"127.{a}.{2 * b}.", "127.0.2.": f"127.{a}.{2 * b + 1}."}
    app1, app2, gateway_port = free_port(), free_port(), free_port()
    subs |= {"127.0.0.1:19101": f"127.0.0.1:{app1}", "127.0.0.1:19201": f"127.0.0.1:{app2}"}
    subs["number: 8080"] = f"number: {gateway_port}"
    for path in config.rglob("*.yaml"):
        text = path.read_text()
        for old, new in subs.items():
            text = text.replace(old, new)
        path.write_text(text)
    return config, gateway_port


@contextmanager
def running(
    config: Path,
    state: Path,
    tmp: Path,
    gateway: str,
    start_timeout: float = 150.0,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    log: str = "meshctl-up.log",
) -> Iterator[UpRun]:
    """``meshctl up --config-dir config --state-dir state`` until "meshplane is up"; stopped at exit."""
    argv = [str(MESHCTL), "up", "--config-dir", str(config), "--state-dir", str(state), *args]
    child = ChildProcess(argv, tmp / log, env=env, inherit_env=env is None, cwd=tmp, name="meshctl up")
    run = UpRun(child, config, state, gateway)
    child.start()
    try:
        try:
            child.wait_ready(lambda: "meshplane is up" in run.output(), start_timeout, '"meshplane is up"')
        except (ChildExited, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{run.output()}") from None
        yield run
    finally:
        pids = run.current_pids()
        child.stop(timeout=60)
        for pid in pids.values():  # only if meshctl up failed to clean up; tests check it did
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
