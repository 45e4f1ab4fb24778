"""One managed child process, used by ``meshctl up``, the test wrappers and the benchmarks.

A :class:`ChildProcess` starts ``argv`` in its own process group (session) with stdout and
stderr appended to a log file, optionally with ``PR_SET_PDEATHSIG`` so it dies with this
process, waits for a readiness condition (failing early, with the end of its log, when it
exits), and stops by PID: SIGTERM to its group, a deadline, then SIGKILL to whatever is left
of the group, and the exit status.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL, parent: int | None = None) -> Callable[[], None]:
    """A function that makes the calling process get ``sig`` when its parent dies (Linux ``prctl``).

    As a ``preexec_fn`` (the default: SIGKILL, the parent being this process) it runs in the
    forked child before exec; a ``multiprocessing`` child calls it itself with its parent's PID.
    The kernel sends the signal when the *thread* that forked the child exits, so fork from a
    thread that lives as long as the process (the main thread). Only the direct child is covered,
    not its own children. The child exits at once when its parent died before ``prctl`` ran.
    Elsewhere than Linux it does nothing.
    """
    expected = os.getpid() if parent is None else parent
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    except (OSError, AttributeError):
        return lambda: None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != expected:
            os._exit(1)

    return arm


class ChildExited(RuntimeError):
    """The child exited while something waited for it to become ready; the message has its log."""


def exit_status(returncode: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` (Popen's negative return codes)."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def log_tail(log: Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file (empty when there is none or it cannot be read)."""
    if log is None:
        return []
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            tail = deque(f.read().decode(errors="replace").splitlines(), maxlen=lines)
    except OSError:
        return []
    return list(tail)


@dataclass
class ChildProcess:
    """A child process in its own process group, stopped by PID; start it again with :meth:`start`.

    ``env`` is added to this process's environment (``inherit_env=False``: it is the whole
    environment). The log is appended to, so a restart keeps the earlier runs' lines.
    """

    argv: list[str]
    log_file: Path | None = None
    env: Mapping[str, str] | None = None
    inherit_env: bool = True
    cwd: Path | None = None
    #: ``PR_SET_PDEATHSIG``: only when started from the main thread (see :func:`die_with_parent`)
    die_with_parent: bool = False
    #: runs in the child before exec, after the death signal is set (e.g. CPU affinity)
    preexec: Callable[[], None] | None = None
    name: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: the group was SIGKILLed after the child exited: never signal that PID (group) again
    _cleared: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.argv[0]).name if self.argv else "process"

    def start(self) -> subprocess.Popen[bytes]:
        """Start it (again); the previous run, if any, must have exited or been stopped."""
        env = {**os.environ, **(self.env or {})} if self.inherit_env else dict(self.env or {})
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
                env=env,
                preexec_fn=self._preexec_fn(),  # noqa: PLW1509  # the callers fork from the main thread
            )
            self._cleared = False
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        return self.proc

    def _preexec_fn(self) -> Callable[[], None] | None:
        steps = [f for f in (die_with_parent() if self.die_with_parent else None, self.preexec) if f]
        if not steps:
            return None

        def run_steps() -> None:
            for step in steps:
                step()

        return run_steps

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The current (or last) run's ``Popen``; RuntimeError when it was never started."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs or before start."""
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if self.log_file is None:
            return ""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def exited_error(self, what: str) -> ChildExited:
        code = self.poll()
        status = exit_status(code) if code is not None else "is not running"
        text = f"{self.name} {status} before {what}"
        if self.log_file is not None:
            text += f"; log: {self.log_file}"
            text += "".join(f"\n    {line}" for line in log_tail(self.log_file))
        return ChildExited(text)

    def wait_ready(
        self,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.05,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Poll ``ready`` (an ``OSError`` counts as not yet) until true or ``timeout``.

        Raises :class:`ChildExited` as soon as the process exits, :class:`TimeoutError` (naming
        the log) when time runs out, and :class:`InterruptedError` when ``cancelled()`` is true.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled():
                raise InterruptedError(f"interrupted while waiting for {self.name}")
            if not self.running:
                raise self.exited_error(what)
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(interval)
        raise TimeoutError(f"{self.name}: no {what} after {timeout:.0f}s; log: {self.log_file}")

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's whole process group (a no-op when nothing of it is left)."""
        if self.proc is None or self.proc.pid <= 0 or self._cleared:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        """SIGTERM to the group, if the child still runs."""
        if self.running:
            self.signal_group(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` for the child to exit; its exit code, or None if it still runs."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int | None:
        """SIGKILL what is left of the group (even when the leader is gone) and reap the child.

        Once that is done for this run, the PID is never signalled again (it may be reused).
        """
        if self.proc is None:
            return None
        if not self._cleared:
            self.signal_group(signal.SIGKILL)
        code = self.proc.wait()
        self._cleared = True
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, up to ``timeout`` seconds, SIGKILL for the rest of the group; the exit code.

        Idempotent; None when it was never started.
        """
        if self.proc is None:
            return None
        self.terminate()
        self.wait(timeout)
        return self.kill()

    def __enter__(self) -> ChildProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(children: list[ChildProcess], timeout: float) -> None:
    """Stop several children at once: SIGTERM to all, one shared deadline, then SIGKILL each group."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline - time.monotonic())
    for child in children:
        child.kill()
