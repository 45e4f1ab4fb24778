"""Stopping child processes the same way everywhere: SIGTERM, wait, then SIGKILL the group."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and reap it; a no-op if it is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux ``prctl``).

    The kernel sends the signal when the *thread* that forked the child exits, so fork from a
    thread that lives as long as the process (the main thread). Only the direct child is covered,
    not its own children. The child exits at once when this process died before ``prctl`` ran.
    Elsewhere than Linux it does nothing.
    """
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
