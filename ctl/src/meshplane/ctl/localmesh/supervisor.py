"""Start, watch and stop the local mesh's processes, each in its own process group.

Every child gets ``start_new_session=True`` so stopping signals its whole group (an app's own
children included): SIGTERM first, SIGKILL to the group for whatever is left after the timeout.
Readiness waits poll a condition and fail early, naming the log, when the process exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class StartError(RuntimeError):
    """A process exited or did not become ready; the message names it and its log."""


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    where: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid


def http_status(url: str, timeout: float = 1.0) -> tuple[int, str]:
    """(status, body) of a GET, or (0, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError) as exc:
        return 0, str(exc)


@dataclass
class Supervisor:
    logs: Path
    children: list[Managed] = field(default_factory=list)
    stop_requested: bool = False

    def start(
        self,
        name: str,
        argv: list[str],
        where: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Managed:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
                env={**os.environ, **(env or {})},
            )
        managed = Managed(name, proc, log, where)
        self.children.append(managed)
        return managed

    def adopt(self, name: str, proc: subprocess.Popen[bytes], log: Path, where: str) -> Managed:
        """Take over stopping a process started elsewhere (in its own session)."""
        managed = Managed(name, proc, log, where)
        self.children.append(managed)
        return managed

    def wait(self, m: Managed, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_requested:
                raise StartError(f"interrupted while waiting for {m.name}")
            if m.proc.poll() is not None:
                raise StartError(f"{m.name} exited with code {m.proc.returncode} before {what}; log: {m.log}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise StartError(f"{m.name}: no {what} after {timeout:.0f}s; log: {m.log}")

    def wait_http(self, m: Managed, url: str, timeout: float = 60.0, body: str = "") -> None:
        def ok() -> bool:
            code, text = http_status(url)
            return code == 200 and (not body or text.strip() == body)

        self.wait(m, ok, f"200{' ' + body if body else ''} from {url}", timeout)

    def exited(self) -> Managed | None:
        return next((m for m in self.children if m.proc.poll() is not None), None)

    def stop_all(self, timeout: float = 10.0, keep_first: int = 1) -> None:
        """Stop every group: all but the first ``keep_first`` (the bus) together, then those.

        Each wave gets SIGTERM, ``timeout`` seconds, then SIGKILL for whatever of its groups is left.
        """
        first, rest = self.children[:keep_first], self.children[keep_first:]
        for wave in (list(reversed(rest)), list(reversed(first))):
            _stop_wave(wave, timeout)
        self.children.clear()


def _stop_wave(wave: list[Managed], timeout: float) -> None:
    for m in wave:
        _signal_group(m.proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for m in wave:
        try:
            m.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for m in wave:
        _signal_group(m.proc, signal.SIGKILL)  # stragglers in the group, even if the leader left
        if m.proc.poll() is None:
            m.proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
