"""The managed child process: log, environment, readiness, stop by PID with a deadline, exit status."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from meshplane.shared.processes import ChildExited, ChildProcess, exit_status, stop_all

PY = sys.executable


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def test_output_goes_to_the_log_appended_and_env_is_added(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("earlier run\n")
    script = (
        "import os, sys; print(os.environ['X_TEST'], os.environ['PATH'] != ''); print('err', file=sys.stderr)"
    )
    child = ChildProcess([PY, "-c", script], log, env={"X_TEST": "hello"})
    child.start()
    assert child.wait(30) == 0
    assert log.read_text() == "earlier run\nhello True\nerr\n"
    assert child.stop() == 0  # already exited: its status, no error


def test_without_inherited_env_only_the_given_variables_are_set(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = ChildProcess(
        [PY, "-c", "import os; print(sorted(os.environ))"], log, env={"ONLY": "1"}, inherit_env=False
    )
    child.start()
    assert child.wait(30) == 0
    names = log.read_text()
    assert "'ONLY'" in names and "PATH" not in names  # (Python may add LC_CTYPE itself)


def test_wait_ready_fails_at_once_with_the_exit_status_and_log_tail(tmp_path: Path) -> None:
    child = ChildProcess([PY, "-c", "print('bad flag: --nope'); raise SystemExit(3)"], tmp_path / "c.log")
    child.start()
    started = time.monotonic()
    with pytest.raises(ChildExited) as info:
        child.wait_ready(lambda: False, timeout=60, what="its port")
    assert time.monotonic() - started < 30
    text = str(info.value)
    assert text.startswith(f"{Path(PY).name} exited with code 3 before its port; log: ")
    assert "    bad flag: --nope" in text


def test_wait_ready_returns_when_ready_and_times_out_naming_the_log(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    script = f"from pathlib import Path; import time; Path({str(marker)!r}).touch(); time.sleep(600)"
    with ChildProcess([PY, "-c", script], tmp_path / "c.log", name="sleeper") as child:
        child.wait_ready(marker.exists, timeout=30, what="the marker")
        with pytest.raises(TimeoutError, match=r"sleeper: no never after 0s; log: .*c\.log"):
            child.wait_ready(lambda: False, timeout=0.2, what="never")
        pid = child.pid
    assert child.poll() == -signal.SIGTERM
    assert _gone(pid)


def test_stop_kills_what_ignores_sigterm_and_the_rest_of_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    script = (
        "import signal, subprocess, sys, time; from pathlib import Path\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"Path({str(pidfile)!r}).write_text(str(g.pid))\n"
        "time.sleep(600)\n"
    )
    child = ChildProcess([PY, "-c", script], tmp_path / "c.log")
    child.start()
    child.wait_ready(lambda: pidfile.exists() and pidfile.read_text() != "", 30, "the grandchild")
    grandchild = int(pidfile.read_text())
    started = time.monotonic()
    assert child.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the stop"
        time.sleep(0.02)
    assert exit_status(-signal.SIGKILL) == "was killed by SIGKILL"


def test_stop_all_shares_one_deadline(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True);"
        " time.sleep(600)"
    )
    children = [ChildProcess([PY, "-c", stubborn], tmp_path / f"{n}.log") for n in range(3)]
    for child in children:
        child.start()
    for child in children:
        assert child.log_file is not None
        log = child.log_file
        child.wait_ready(lambda log=log: "up" in log.read_text(), 30, "up")
    started = time.monotonic()
    stop_all(children, timeout=1.0)
    assert time.monotonic() - started < 3  # one deadline for all three, not three in a row
    assert [c.poll() for c in children] == [-signal.SIGKILL] * 3


def test_never_started_is_harmless() -> None:
    child = ChildProcess(["true"])
    assert child.stop() is None and child.poll() is None and not child.running
    with pytest.raises(RuntimeError, match="never started"):
        _ = child.pid


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = (
        "import sys, time; from pathlib import Path\n"
        "from meshplane.shared.processes import ChildProcess\n"
        "c = ChildProcess([sys.executable, '-c', 'import time; time.sleep(600)'], die_with_parent=True)\n"
        f"c.start(); Path({str(pidfile)!r}).write_text(str(c.pid)); time.sleep(600)\n"
    )
    parent = ChildProcess([PY, "-c", script], tmp_path / "parent.log")
    parent.start()
    try:
        parent.wait_ready(lambda: pidfile.exists() and pidfile.read_text() != "", 30, "the child's pid")
        child = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its group
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, f"pid {child} outlived its SIGKILLed parent"
            time.sleep(0.02)
    finally:
        parent.stop(timeout=1)
