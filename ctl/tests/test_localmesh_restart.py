"""`meshctl up`'s restart policy and supervisor, on a made-up clock and with real short-lived processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshplane.ctl.localmesh.restart import RestartPolicy
from meshplane.ctl.localmesh.supervisor import State, Supervisor
from meshplane.shared.processes import exit_status, log_tail


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_restart_at_once_then_backoff_doubles_from_1s_to_30s() -> None:
    policy = RestartPolicy()
    delays = [policy.exited(now=1000.0 + i, healthy_since=1000.0 + i - 1) for i in range(8)]
    assert delays == [0, 1, 2, 4, 8, 16, 30, 30]


def test_backoff_resets_after_60s_healthy_not_before() -> None:
    policy = RestartPolicy()
    for _ in range(5):
        policy.exited(now=0.0, healthy_since=None)
    assert policy.exited(now=159.9, healthy_since=100.0) == 16  # 59.9 s healthy: keeps doubling
    assert policy.exited(now=260.0, healthy_since=200.0) == 0  # 60 s healthy: at once, as at first
    assert policy.failures == 1
    assert policy.exited(now=261.0, healthy_since=None) == 1


def test_crash_loop_is_reported_once_per_loop() -> None:
    policy = RestartPolicy()
    policy.exited(now=0.0, healthy_since=-100.0)
    assert not policy.should_report(became_ready=True)  # one exit after a long healthy run: no loop
    policy.exited(now=5.0, healthy_since=2.0)
    assert policy.should_report(became_ready=True)  # a second exit within 60 s: a crash loop
    policy.exited(now=10.0, healthy_since=None)
    assert not policy.should_report(became_ready=False)  # reported already
    policy.exited(now=200.0, healthy_since=100.0)  # healthy 100 s: a new story
    assert not policy.should_report(became_ready=True)


def test_a_restart_that_never_gets_ready_is_reported_at_once() -> None:
    policy = RestartPolicy()
    policy.exited(now=0.0, healthy_since=None)
    assert policy.should_report(became_ready=False)


def test_exit_status_names_the_signal_or_code() -> None:
    assert exit_status(-9) == "was killed by SIGKILL"
    assert exit_status(-15) == "was killed by SIGTERM"
    assert exit_status(3) == "exited with code 3"


def test_log_tail_is_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log) == [f"line {i}" for i in range(80, 100)]
    assert log_tail(tmp_path / "missing.log") == []


def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
    proc.wait(30)


def test_supervisor_restarts_with_backoff_reports_the_loop_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    sup = Supervisor(tmp_path, clock=clock)
    crasher = [sys.executable, "-c", "import sys; print('bad flag: --nope', flush=True); sys.exit(3)"]
    bad = sup.start("crasher", crasher)
    good = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        starts = [bad.pid]
        restart_times = []
        _wait_exit(bad.proc)
        sup.tick()  # the first exit: restarted in the same tick
        assert bad.state is State.STARTING and bad.restart_at == clock.now
        restart_times.append(0.0)
        starts.append(bad.pid)
        for _ in range(4):
            _wait_exit(bad.proc)
            sup.tick()  # sees the exit, schedules the restart
            assert bad.state is State.WAITING
            wait = bad.restart_at - clock.now
            clock.now += wait - 0.01
            sup.tick()
            assert bad.state is State.WAITING, "restarted before its backoff ran out"
            clock.now += 0.01
            sup.tick()
            restart_times.append(wait)
            starts.append(bad.pid)
        assert [round(w) for w in restart_times] == [0, 1, 2, 4, 8]
        assert len(set(starts)) == 6 and bad.restarts == 5
        assert good.proc.poll() is None and good.restarts == 0  # the rest keeps running
    finally:
        sup.stop_all(timeout=5)
    out, err = capsys.readouterr()
    assert "meshctl up: crasher exited with code 3 (pid" in out
    assert "restarting now" in out and "restarting in 1s" in out and "restarting in 8s" in out
    assert out.count("meshctl up: crasher restarted as pid") == 5
    assert err.count("crasher cannot start") == 1, err  # reported once, not per restart
    assert "    bad flag: --nope" in err


def test_supervisor_marks_ready_again_and_resets_after_60s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    sup = Supervisor(tmp_path, clock=clock)
    marker = tmp_path / "ready"
    m = sup.start("svc", [sys.executable, "-c", "import time; time.sleep(600)"])
    m.ready = marker.exists
    try:
        first = m.pid
        os.kill(first, signal.SIGKILL)
        _wait_exit(m.proc)
        sup.tick()  # the first exit after a healthy run: restarted at once
        assert m.state is State.STARTING and m.pid != first
        sup.tick()
        assert m.state is State.STARTING  # not ready yet
        marker.touch()
        sup.tick()
        assert m.state is State.RUNNING
        clock.now += 60
        os.kill(m.pid, signal.SIGKILL)
        _wait_exit(m.proc)
        sup.tick()
        assert m.restart_at == clock.now  # 60 s healthy: restarted at once again
        sup.tick()  # restarted, and ready in the same tick (the marker is there)
        assert m.state is State.RUNNING
        os.kill(m.pid, signal.SIGKILL)
        _wait_exit(m.proc)
        sup.tick()
        assert m.restart_at - clock.now == 1  # exited again within 60 s: backoff, a crash loop
    finally:
        sup.stop_all(timeout=5)
    out, err = capsys.readouterr()
    assert f"meshctl up: svc was killed by SIGKILL (pid {first}); restarting now" in out
    assert out.count("svc is ready again") == 2
    assert err.count("svc is crash-looping (2 exits without 60s healthy") == 1, err


def test_children_die_when_their_parent_is_sigkilled(tmp_path: Path) -> None:
    """A supervisor in a child interpreter starts a sleeper; SIGKILL the interpreter: the sleeper dies."""
    pidfile = tmp_path / "pid"
    script = (
        "import sys, time; from pathlib import Path\n"
        "from meshplane.ctl.localmesh.supervisor import Supervisor\n"
        f"sup = Supervisor(Path({str(tmp_path)!r}))\n"
        "m = sup.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"Path({str(pidfile)!r}).write_text(str(m.pid))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline and parent.poll() is None, "the supervisor did not start"
            time.sleep(0.02)
        child = int(pidfile.read_text())
        os.kill(child, 0)  # alive
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child):
            assert time.monotonic() < deadline, f"pid {child} outlived its SIGKILLed parent"
            time.sleep(0.02)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (no one reaped it: its parent is gone and init has not yet) counts as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
