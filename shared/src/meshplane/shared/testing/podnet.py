"""Pod network namespaces for the test kubelet: real pod addresses that real processes serve (root).

A :class:`PodNetwork` is a Linux bridge in the host's network namespace with the first address of
a random ``10.x.y.0/24`` (the "node" side). Each pod gets a :class:`PodSandbox`: its own network
namespace, a veth pair whose host end is on the bridge, ``eth0`` inside with the next free address
of the /24, and a default route via the bridge. So the host (an Envoy, a client) reaches
``<pod IP>:<port>`` in the pod's namespace, and nothing else on the machine is touched.
:meth:`PodNetwork.run` starts a process inside a pod's namespace (``nsenter``), as a container
runtime would; :meth:`PodNetwork.close` stops every such process and deletes the namespaces, the
veths and the bridge by name.

Names carry a random tag (``mpbr<tag>``, ``mppod-<tag>-<n>``, ``mpv<tag>-<n>``), so concurrent
test runs never share a bridge, an address range or a namespace. Needs root and ``ip`` (iproute2).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from meshplane.shared.processes import ChildProcess


class PodNetworkUnavailable(Exception):
    """Not root, or no ``ip`` / ``nsenter`` here."""


def unavailable_reason() -> str | None:
    """Why pod network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "pod network namespaces need root"
    missing = [tool for tool in ("ip", "nsenter") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)} (iproute2, util-linux)" if missing else None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class PodSandbox:
    """One pod's network namespace, its address and the processes running in it."""

    key: str
    netns: str
    host_veth: str
    ip: str
    processes: list[ChildProcess] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"


class PodNetwork:
    """A test bridge and one network namespace per pod on it; see the module docstring."""

    def __init__(self, log_dir: Path, cidr: str | None = None) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise PodNetworkUnavailable(reason)
        self.tag = secrets.token_hex(3)
        self.network = ipaddress.ip_network(
            cidr or f"10.{secrets.randbelow(200) + 30}.{secrets.randbelow(250) + 1}.0/24"
        )
        hosts = self.network.hosts()
        self.gateway = str(next(hosts))
        self._free = (str(h) for h in hosts)
        self.bridge = f"mpbr{self.tag}"
        self.log_dir = log_dir
        self.sandboxes: dict[str, PodSandbox] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._up = False

    def __enter__(self) -> PodNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> PodNetwork:
        """Create the bridge with the gateway address."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _ip("link", "add", self.bridge, "type", "bridge")
        self._up = True
        _ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def attach(self, key: str, default_route: bool = True) -> PodSandbox:
        """The sandbox for ``key`` (a pod's uid), made on first use: netns, veth, address, routes
        (without ``default_route`` the pod reaches only this network, the host's address included)."""
        with self._lock:
            if key in self.sandboxes:
                return self.sandboxes[key]
            self._count += 1
            n = self._count
            box = PodSandbox(key, f"mppod-{self.tag}-{n}", f"mpv{self.tag}-{n}", next(self._free))
            self.sandboxes[key] = box
        _ip("netns", "add", box.netns)
        _ip("-n", box.netns, "link", "set", "lo", "up")
        _ip("link", "add", box.host_veth, "type", "veth", "peer", "name", "eth0", "netns", box.netns)
        _ip("link", "set", box.host_veth, "master", self.bridge, "up")
        _ip("-n", box.netns, "addr", "add", f"{box.ip}/{self.network.prefixlen}", "dev", "eth0")
        _ip("-n", box.netns, "link", "set", "eth0", "up")
        if default_route:
            _ip("-n", box.netns, "route", "add", "default", "via", self.gateway)
        return box

    def join(self, box: PodSandbox, ifname: str = "eth1") -> str:
        """Give ``box`` (another network's sandbox) a second interface on this network, as a
        gateway with a leg on two networks; returns its address here. It goes with the sandbox."""
        with self._lock:
            self._count += 1
            veth, ip = f"mpv{self.tag}-{self._count}", next(self._free)
        _ip("link", "add", veth, "type", "veth", "peer", "name", ifname, "netns", box.netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", box.netns, "addr", "add", f"{ip}/{self.network.prefixlen}", "dev", ifname)
        _ip("-n", box.netns, "link", "set", ifname, "up")
        return ip

    def run(self, box: PodSandbox, name: str, argv: list[str], env: dict[str, str]) -> ChildProcess:
        """Start ``argv`` inside the sandbox's namespace (nsenter execs it: the PID is the program's),
        its output appended to ``<log_dir>/<netns>-<name>.log``."""
        proc = ChildProcess(
            ["nsenter", f"--net={box.path}", *argv],
            self.log_dir / f"{box.netns}-{name}.log",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            inherit_env=False,
            name=f"{box.netns}-{name}",
        )
        proc.start()
        box.processes.append(proc)
        return proc

    def detach(self, key: str) -> None:
        """Stop the sandbox's processes and delete its namespace (which takes its veth pair along)."""
        with self._lock:
            box = self.sandboxes.pop(key, None)
        if box is None:
            return
        for proc in box.processes:
            proc.stop(timeout=5)
        subprocess.run(["ip", "netns", "del", box.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", box.host_veth], capture_output=True)  # if the netns was gone

    def close(self) -> None:
        """Detach every sandbox and delete the bridge; idempotent."""
        for key in list(self.sandboxes):
            self.detach(key)
        if self._up:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self._up = False
