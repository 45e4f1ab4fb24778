"""Start nats-server and meshplane-galley (empty config dir unless given) for a benchmark; stop both."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Running:
    nats_url: str
    webhook_port: int
    monitoring_port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time galley has used so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def galley(tmp: Path, conf: Path) -> Iterator[Running]:
    """nats-server + meshplane-galley on free ports, returned once galley is ready."""
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log").start()
    port, mon = free_port(), free_port()
    argv = [str(BIN / "meshplane-galley"), "--nats-url", nats.url, "--config-dir", str(conf)]
    argv += ["--webhook-addr", f"127.0.0.1:{port}", "--monitoring-addr", f"127.0.0.1:{mon}"]
    argv += ["--debug-addr", "127.0.0.1:0"]
    proc = ChildProcess(argv, tmp / "galley.log", name="galley")
    proc.start()
    try:
        proc.wait_ready(lambda: _ready(f"http://127.0.0.1:{mon}/readyz"), 60, "/readyz 200", interval=0.1)
        yield Running(nats.url, port, mon, proc.pid)
    finally:
        proc.stop(15)
        nats.stop()


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # an HTTP error status raises (OSError)
        return bool(resp.status == 200)
