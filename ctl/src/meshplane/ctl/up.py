"""`meshctl up`: run the local mesh on this machine until Ctrl-C, leaving no process behind."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from meshplane.shared.natsserver import NatsServer, free_port


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    where: str


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run the whole mesh locally until Ctrl-C")
    p.add_argument("--config-dir", default="examples/bookinfo", help="directory of Istio YAML")
    p.add_argument("--state-dir", default=".state", help="where the bus store and logs go")
    p.set_defaults(func=run)


def _services(
    bin_dir: Path, nats_url: str, config_dir: Path, state: Path
) -> list[tuple[str, list[str], str]]:
    """(name, argv, where-it-listens) for each control-plane service of the local mesh."""
    common = ["--nats-url", nats_url, "--config-dir", str(config_dir)]
    ca_port, mtls_port, ca_mon = free_port(), free_port(), free_port()
    citadel = [
        str(bin_dir / "meshplane-citadel"),
        "--nats-url",
        nats_url,
        "--ca-dir",
        str(state / "ca"),
        "--grpc-addr",
        f"127.0.0.1:{ca_port}",
        "--grpc-mtls-addr",
        f"127.0.0.1:{mtls_port}",
        "--monitoring-addr",
        f"127.0.0.1:{ca_mon}",
    ]
    hook, galley_mon, pilot_http = free_port(), free_port(), free_port()
    galley = [str(bin_dir / "meshplane-galley"), *common]
    galley += ["--webhook-addr", f"127.0.0.1:{hook}", "--monitoring-addr", f"127.0.0.1:{galley_mon}"]
    pilot = [str(bin_dir / "meshplane-pilot"), "--nats-url", nats_url]
    pilot += ["--grpc-addr", "127.0.0.1:15010", "--http-addr", f"127.0.0.1:{pilot_http}"]
    return [
        ("meshplane-galley", galley, f"webhook 127.0.0.1:{hook}, debug :{galley_mon}, "),
        ("meshplane-pilot", pilot, f"xDS 127.0.0.1:15010, debug :{pilot_http}, "),
        (
            "meshplane-citadel",
            citadel,
            f"CA 127.0.0.1:{ca_port} (root {state / 'ca' / 'root-cert.pem'}), metrics :{ca_mon}, ",
        ),
    ]


def run(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    nats = NatsServer(store_dir=state / "nats", log_file=logs / "nats.log")
    print("starting nats-server ...", flush=True)
    nats.start()
    procs: list[Managed] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        for name, argv, where in _services(bin_dir, nats.url, Path(args.config_dir), state):
            print(f"starting {name} ...", flush=True)
            with open(logs / f"{name}.log", "ab") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(Managed(name, proc, f"{where}log: {logs / (name + '.log')}"))
        print()
        print(f"{'COMPONENT':<22} {'PID':>7}  WHERE")
        print(f"{'nats-server':<22} {nats.proc.pid if nats.proc else 0:>7}  {nats.url}")
        for m in procs:
            print(f"{m.name:<22} {m.proc.pid:>7}  {m.where}")
        print("\nmeshplane is up. Press Ctrl-C to stop.", flush=True)
        while not stopping:
            for m in procs:
                if m.proc.poll() is not None:
                    print(f"{m.name} exited with code {m.proc.returncode}; see its log", file=sys.stderr)
                    stopping = True
            time.sleep(0.2)
    finally:
        print("\nstopping ...", flush=True)
        for m in reversed(procs):
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in reversed(procs):
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
        nats.stop()
        print("stopped.")
    return 0
