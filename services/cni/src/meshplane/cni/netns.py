"""Run ``iptables-save`` / ``iptables-restore`` inside a pod's network namespace (stdlib only).

Two ways in: the short-lived plugin process joins the netns itself with ``setns(2)`` (one
``ctypes`` call; every child it then starts is inside), which saves an ``nsenter`` exec per call
on the pod-start path; the long-lived agent, which must stay in the host netns, prefixes each
command with ``nsenter --net=PATH``.  One ``iptables-restore`` per address family applies a whole
rule set atomically.
"""

from __future__ import annotations

import os
import subprocess

from meshplane.cni.rules.iptables import IPV6

CLONE_NEWNET = 0x40000000
TIMEOUT_SECONDS = 30.0
_SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


class NetnsError(RuntimeError):
    """The netns cannot be entered or an iptables command inside it failed."""


def _tool(name: str) -> str:
    for directory in (os.environ.get("PATH", "") + ":" + _SBIN).split(":"):
        candidate = os.path.join(directory, name)
        if directory and os.access(candidate, os.X_OK):
            return candidate
    raise NetnsError(f"{name} not found on PATH or in {_SBIN}")


def join(path: str) -> None:
    """Move this (single-threaded) process into the network namespace at ``path``."""
    import ctypes

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsError(f"cannot open netns {path}: {exc.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns into {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


class Netns:
    """iptables access to one network namespace."""

    def __init__(self, path: str, *, joined: bool = False) -> None:
        self.path = path
        self._prefix = [] if joined else [_tool("nsenter"), f"--net={path}"]
        if not joined and not os.path.exists(path):
            raise NetnsError(f"netns {path} does not exist")

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                self._prefix + argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NetnsError(f"{argv[0]} in {self.path}: {exc}") from None
        if done.returncode != 0:
            raise NetnsError(f"{os.path.basename(argv[0])} in {self.path} failed: {done.stderr.strip()}")
        return done.stdout

    def save(self, family: int) -> str:
        """``iptables-save`` of every table in the netns (one exec)."""
        return self._run([_tool("ip6tables-save" if family == IPV6 else "iptables-save")])

    def has_tproxy_routing(self, family: int, mark: int, table: int) -> bool:
        """Whether the policy rule sending TPROXY-marked packets to ``table`` is in place."""
        rules = self._run([_tool("ip"), "-6" if family == IPV6 else "-4", "rule", "show"])
        return f"fwmark {mark:#x} lookup {table}" in rules

    def set_tproxy_routing(self, family: int, mark: int, table: int, present: bool) -> None:
        """Add (idempotently) or remove Istio's TPROXY routing: marked packets are local."""
        ip = [_tool("ip"), "-6" if family == IPV6 else "-4"]
        has_rule = self.has_tproxy_routing(family, mark, table)
        if present:
            if not has_rule:
                self._run([*ip, "rule", "add", "fwmark", str(mark), "lookup", str(table)])
            self._run([*ip, "route", "replace", "local", "default", "dev", "lo", "table", str(table)])
        elif has_rule:
            self._run([*ip, "rule", "del", "fwmark", str(mark), "lookup", str(table)])
            self._run([*ip, "route", "flush", "table", str(table)])

    def restore(self, family: int, text: str) -> None:
        """Apply ``text`` with ``iptables-restore --noflush`` (atomic per table)."""
        if not text:
            return
        tool = _tool("ip6tables-restore" if family == IPV6 else "iptables-restore")
        self._run([tool, "--noflush", "--wait"], stdin=text)
