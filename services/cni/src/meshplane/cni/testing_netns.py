"""Test support for traffic inside network namespaces: a worker thread moved into a netns (its
sockets live there), programs started inside a netns and stopped by PID, clients run there as an
unprivileged user, and a tiny TCP echo server.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from meshplane.shared.processes import ChildProcess

_T = TypeVar("_T")
_CLONE_NEWNET = 0x40000000
NOBODY = 65534

HTTP_CLIENT = """
import http.client, json, sys
host, port, headers = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
try:
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/", headers=headers)
    r = c.getresponse()
    print(json.dumps({"status": r.status, "headers": dict(r.getheaders()), "body": r.read().decode()}))
except OSError as exc:
    print(json.dumps({"error": repr(exc)}))
"""
TCP_CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    c.sendall(b"hello"); print(c.recv(1024).decode() or "<closed>")
except OSError as exc:
    print("error:", repr(exc))
"""


def _enter_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsThread:
    """One worker thread moved into a network namespace (setns is per thread).

    Sockets made by functions run here (a listening server, an httpx client) belong to that
    netns for their whole life, whichever thread later uses them; the rest of the process stays
    in its own netns.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix="netns", initializer=_enter_netns, initargs=(path,)
        )

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@contextmanager
def netns_thread(path: str) -> Iterator[NetnsThread]:
    worker = NetnsThread(path)
    try:
        yield worker
    finally:
        worker.close()


@contextmanager
def netns_process(
    netns: str, argv: list[str], log: Path, uid: int = 0, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` inside ``netns`` (nsenter execs it, so the PID is the program's); stop it by PID."""
    prefix = ["nsenter", f"--net={netns}"] + ([f"--setuid={uid}", f"--setgid={uid}"] if uid else [])
    child = ChildProcess(prefix + argv, log, env=env)
    try:
        yield child.start()
    finally:
        child.stop(10)


def _world_runnable(path: str) -> bool:
    """Can a user with no rights of its own exec this file (every parent directory searchable)?"""
    real = Path(os.path.realpath(path))
    if not real.is_file() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)


def unprivileged_python() -> str | None:
    """A Python interpreter any user can run (the venv's may live under a private home)."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if candidate and _world_runnable(candidate):
            return candidate
    return None


def run_unprivileged(netns: str, script: str, *args: str, uid: int = NOBODY) -> str:
    """Run a stdlib-only Python ``script`` as ``uid`` inside ``netns``; its stdout."""
    python = unprivileged_python()
    if python is None:
        raise RuntimeError("no python interpreter that an unprivileged user can run")
    argv = ["nsenter", f"--net={netns}", f"--setuid={uid}", f"--setgid={uid}", python, "-c", script]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, cwd="/")
    if done.returncode != 0:
        raise RuntimeError(f"client in {netns} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def http_get(netns: str, host: str, port: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``GET http://host:port/`` from an unprivileged process in ``netns``.

    Returns ``{"status", "headers", "body"}``, or ``{"error"}`` when the connection failed.
    """
    reply: dict[str, Any] = json.loads(
        run_unprivileged(netns, HTTP_CLIENT, host, str(port), json.dumps(headers or {}))
    )
    return reply


def tcp_exchange(netns: str, host: str, port: int) -> str:
    """Send ``hello`` over TCP from an unprivileged process in ``netns``; the reply or ``error: ...``."""
    return run_unprivileged(netns, TCP_CLIENT, host, str(port))


class EchoServer:
    """A TCP server that answers ``<name>:<what it got>`` and counts connections."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.count = name, 0
        self.sock = socket.create_server((host, port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.count += 1
                conn.sendall(self.name.encode() + b":" + conn.recv(1024))

    def stop(self) -> None:
        self.sock.close()
