"""Start, watch, restart and stop the local mesh's processes, each in its own process group.

Every child is a ``processes.ChildProcess`` in its own process group, so stopping signals its
whole group (an app's own children included): SIGTERM first, SIGKILL to the group for whatever
is left after the timeout. Every child also gets ``PR_SET_PDEATHSIG`` (SIGKILL), so it dies
with ``meshctl up`` even when that is SIGKILLed; its own children are not covered by that.
Readiness waits during start-up poll a condition and fail early, naming the log, when the
process exits. After start-up, ``tick`` restarts a process that exits with the same argv, ports
and log (``restart.RestartPolicy`` says when), first SIGKILLing what is left of its group.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from meshplane.ctl.localmesh.restart import RestartPolicy
from meshplane.shared.processes import ChildExited, ChildProcess, exit_status, log_tail, stop_all


class StartError(RuntimeError):
    """A process exited or did not become ready; the message names it and its log."""


class State(Enum):
    RUNNING = "running"
    WAITING = "waiting to restart"
    STARTING = "starting"


@dataclass
class Managed:
    name: str
    child: ChildProcess
    where: str = ""
    #: started again (same argv, ports, files; log appended) when it exits; False: never restarted
    restartable: bool = True
    #: its readiness probe after a restart (None: running is ready)
    ready: Callable[[], bool] | None = None
    #: runs before each restart (e.g. remove a stale socket file)
    before_restart: Callable[[], None] | None = None
    restarts: int = 0
    state: State = State.RUNNING
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    healthy_since: float | None = None
    exited_at: float = 0.0
    restart_at: float = 0.0

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    @property
    def log(self) -> Path:
        assert self.child.log_file is not None
        return self.child.log_file


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
    clock: Callable[[], float] = time.monotonic

    def start(
        self,
        name: str,
        argv: list[str],
        where: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Managed:
        log = self.logs / f"{name}.log"
        child = ChildProcess(argv, log, env=env, cwd=cwd, die_with_parent=True, name=name)
        child.start()
        return self.adopt(name, child, where)

    def adopt(self, name: str, child: ChildProcess, where: str, restartable: bool = True) -> Managed:
        """Take over stopping (and restarting) a child started elsewhere; it needs a log file."""
        if child.log_file is None:
            raise ValueError(f"{name}: a managed child needs a log file")
        child.name = name
        managed = Managed(name, child, where, restartable=restartable, healthy_since=self.clock())
        self.children.append(managed)
        return managed

    def tick(self) -> None:
        """Restart what exited (after its backoff) and notice what got ready; call it often."""
        for m in self.children:
            if m.restartable:
                self._tick(m, self.clock())

    def _tick(self, m: Managed, now: float) -> None:
        if m.state is not State.WAITING:
            code = m.child.poll()
            if code is not None:
                self._exited(m, code, now)
            elif m.state is State.STARTING and _probe(m.ready):
                m.state, m.healthy_since = State.RUNNING, now
                self.say(f"{m.name} is ready again (pid {m.pid}, {now - m.exited_at:.1f}s after it stopped)")
        if m.state is State.WAITING and now >= m.restart_at:
            self._restart(m, now)

    def _exited(self, m: Managed, code: int, now: float) -> None:
        self._backoff(m, now, f"{exit_status(code)} (pid {m.pid})")

    def _backoff(self, m: Managed, now: float, what: str) -> None:
        became_ready = m.state is State.RUNNING
        delay = m.policy.exited(now, m.healthy_since if became_ready else None)
        m.state, m.exited_at, m.restart_at, m.healthy_since = State.WAITING, now, now + delay, None
        self.say(f"{m.name} {what}; restarting {f'in {delay:.0f}s' if delay else 'now'}")
        if m.policy.should_report(became_ready):
            why = "is crash-looping" if became_ready else "cannot start"
            tail = "\n".join(f"    {line}" for line in log_tail(m.log))
            self.say(
                f"{m.name} {why} ({m.policy.failures} exits without 60s healthy; the rest keeps running);"
                f" the end of {m.log}:\n{tail}",
                err=True,
            )

    def _restart(self, m: Managed, now: float) -> None:
        m.child.kill()  # what is left of the old group (its own children)
        m.state = State.STARTING
        try:
            if m.before_restart is not None:
                m.before_restart()
            m.child.start()
        except (OSError, RuntimeError, ValueError) as exc:
            self._backoff(m, now, f"could not be started ({exc})")
            return
        m.restarts += 1
        self.say(f"{m.name} restarted as pid {m.pid} (restart {m.restarts})")

    def say(self, text: str, err: bool = False) -> None:
        print(f"meshctl up: {text}", file=sys.stderr if err else sys.stdout, flush=True)

    def wait(self, m: Managed, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        try:
            m.child.wait_ready(ready, timeout, what, cancelled=lambda: self.stop_requested)
        except (ChildExited, TimeoutError, InterruptedError) as exc:
            raise StartError(str(exc)) from None

    def wait_http(self, m: Managed, url: str, timeout: float = 60.0, body: str = "") -> None:
        def ok() -> bool:
            code, text = http_status(url)
            return code == 200 and (not body or text.strip() == body)

        self.wait(m, ok, f"200{' ' + body if body else ''} from {url}", timeout)

    def stop_all(self, timeout: float = 10.0, keep_first: int = 1) -> None:
        """Stop every group: all but the first ``keep_first`` (the bus) together, then those.

        Each wave gets SIGTERM, ``timeout`` seconds, then SIGKILL for whatever of its groups is left.
        """
        first, rest = self.children[:keep_first], self.children[keep_first:]
        for wave in (list(reversed(rest)), list(reversed(first))):
            stop_all([m.child for m in wave], timeout)
        self.children.clear()


def _probe(ready: Callable[[], bool] | None) -> bool:
    if ready is None:
        return True
    try:
        return ready()
    except OSError:
        return False
