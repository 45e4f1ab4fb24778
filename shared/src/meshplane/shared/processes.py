"""Stopping child processes the same way everywhere: SIGTERM, wait, then SIGKILL the group."""

from __future__ import annotations

import os
import signal
import subprocess


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
