"""Start nats-server and meshplane-galley (empty config dir unless given) for a benchmark; stop both."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshplane.shared.natsserver import NatsServer, free_port

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
    proc = subprocess.Popen(
        [str(BIN / "meshplane-galley"), "--nats-url", nats.url, "--config-dir", str(conf),
         "--webhook-addr", f"127.0.0.1:{port}", "--monitoring-addr", f"127.0.0.1:{mon}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{mon}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield Running(nats.url, port, mon, proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)
        nats.stop()
