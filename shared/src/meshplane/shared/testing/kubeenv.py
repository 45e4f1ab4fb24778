"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

Used by the tests (``meshplane.shared.testing.kubefixtures``) and by ``make kube-up`` /
``make kube-down`` (``python -m meshplane.shared.testing.kubeenv up|down``). The binaries are
built from the Go modules in ``tests/kube`` by ``tests/kube/build.sh``, once per machine, into a
cache outside the repository. Everything listens on 127.0.0.1 on free ports:

- etcd (single member, ``--unsafe-no-fsync``), data under ``<state>/etcd``;
- kube-apiserver: TLS with a CA made here, admin = client certificate in ``system:masters``,
  ``--authorization-mode=Node,RBAC``, the admission webhooks on, a service-account issuer and
  signing key, ``--advertise-address=127.0.0.1 --endpoint-reconciler-type=none``;
- kube-controller-manager with the controllers listed in ``CONTROLLERS``.

The admin kubeconfig is ``<state>/kubeconfig``; PIDs and ports are in ``<state>/cluster.json``.
No kubelet or scheduler runs: ``meshplane.shared.testing.kubelet`` stands in for them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.kubecerts import ClusterCerts, write_cluster_certs, write_kubeconfig

REPO = Path(__file__).resolve().parents[5]
BUILD_SCRIPT = REPO / "tests" / "kube" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs are data only: nothing routes them, nothing may dial them
CONTROLLERS = (
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "statefulset-controller",
    "endpointslice-controller",
    "endpoints-controller",
    "root-ca-certificate-publisher-controller",
)


class KubeUnavailable(Exception):
    """The binaries are not there (and cannot be built here)."""


def bin_dir() -> Path:
    """Where tests/kube/build.sh puts (or has put) the binaries for the current go.mod/go.sum."""
    if override := os.environ.get("MESHPLANE_KUBE_BIN"):
        return Path(override)
    if not BUILD_SCRIPT.exists():
        raise KubeUnavailable(f"{BUILD_SCRIPT} not found: run from a meshplane checkout")
    out = subprocess.run([str(BUILD_SCRIPT), "--bin-dir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def find_binaries() -> Path:
    """The directory holding etcd, kube-apiserver and kube-controller-manager, or KubeUnavailable."""
    directory = bin_dir()
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if not missing:
        return directory
    if shutil.which("go") is None:
        raise KubeUnavailable(
            f"Go is not installed, so {', '.join(missing)} cannot be built (tests/kube/build.sh)"
        )
    raise KubeUnavailable(
        f"{', '.join(missing)} not built yet in {directory}: run `make kube-build` "
        "(tests/kube/build.sh; `make test` runs it first)"
    )


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 30.0, procs: Sequence[ChildProcess] = ()
) -> None:
    """Poll ``check`` every 100 ms until it is true; an ``OSError`` from it counts as not yet.

    Raises AssertionError naming ``what`` at the deadline, or RuntimeError with the log's tail as
    soon as one of ``procs`` exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise proc.exited_error(what)
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager under ``state_dir``, started by :meth:`start`."""

    state_dir: Path
    binaries: Path = field(default_factory=find_binaries)
    etcd_port: int = 0
    api_port: int = 0
    kcm_port: int = 0
    processes: list[ChildProcess] = field(default_factory=list)
    certs: ClusterCerts | None = None
    #: tests: kill the processes if the test run itself dies (kube-up leaves them running)
    die_with_parent: bool = False

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def issuer(self) -> str:
        return self.server

    def start(self, timeout: float = 120.0) -> KubeCluster:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.etcd_port = self.etcd_port or free_port()
        self.api_port = self.api_port or free_port()
        self.kcm_port = self.kcm_port or free_port()
        self.certs = write_cluster_certs(self.state_dir / "pki")
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._write_kubeconfig()
            self._start_controller_manager(timeout)
        except BaseException:
            self.stop()
            raise
        self._record()
        return self

    def _spawn(self, name: str, args: list[str]) -> ChildProcess:
        log = self.state_dir / "logs" / f"{name}.log"
        # The death signal is SIGKILL: all three would get it at once, and an API server whose
        # etcd is gone waits in its graceful shutdown indefinitely.
        argv = [str(self.binaries / name), *args]
        proc = ChildProcess(argv, log, die_with_parent=self.die_with_parent, name=name)
        proc.start()
        self.processes.append(proc)
        return proc

    def _start_etcd(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                "--listen-peer-urls=http://127.0.0.1:0",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return bool(json.load(response).get("health") == "true")

        wait_until(healthy, f"etcd health on {url}", timeout, self.processes)

    def _start_apiserver(self, timeout: float) -> None:
        certs = self._certs()
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                f"--service-account-issuer={self.issuer}",
                f"--service-account-signing-key-file={certs.sa_key}",
                f"--service-account-key-file={certs.sa_pub}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--cert-dir={self.state_dir / 'pki' / 'generated'}",
            ],
        )
        wait_until(
            lambda: self._get("/readyz") == 200,
            f"kube-apiserver /readyz on {self.server}",
            timeout,
            self.processes,
        )

    def _start_controller_manager(self, timeout: float) -> None:
        certs = self._certs()
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.state_dir / 'pki' / 'kcm'}",
                f"--root-ca-file={certs.ca_cert}",
                f"--service-account-private-key-file={certs.sa_key}",
                "--use-service-account-credentials=false",
            ],
        )
        # The serviceaccount controller making `default` in `default` shows the controllers run.
        path = "/api/v1/namespaces/default/serviceaccounts/default"
        wait_until(
            lambda: self._get(path) == 200,
            "kube-controller-manager (default ServiceAccount)",
            timeout,
            self.processes,
        )

    def restart_apiserver(self, timeout: float = 120.0) -> None:
        """Stop kube-apiserver and start it again with the same flags and port (etcd keeps the data)."""
        (old,) = [p for p in self.processes if p.name == "kube-apiserver"]
        old.stop(timeout=10)
        old.start()
        wait_until(
            lambda: self._get("/readyz") == 200,
            f"kube-apiserver /readyz on {self.server} after a restart",
            timeout,
            self.processes,
        )
        self._record()

    def _certs(self) -> ClusterCerts:
        if self.certs is None:
            raise RuntimeError("the cluster's certificates are written by start()")
        return self.certs

    def ssl_context(self) -> ssl.SSLContext:
        certs = self._certs()
        ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
        ctx.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        return ctx

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(
                self.server + path, timeout=5, context=self.ssl_context()
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    def _write_kubeconfig(self) -> None:
        certs = self._certs()
        user = {"client-certificate": str(certs.admin_cert), "client-key": str(certs.admin_key)}
        write_kubeconfig(self.kubeconfig, self.server, certs.ca_cert, user)

    def token_kubeconfig(self, path: Path, token: str) -> Path:
        """Write a kubeconfig at ``path`` that authenticates with a bearer ``token`` (for example a
        ServiceAccount's, from the TokenRequest API), so a component runs as that account."""
        write_kubeconfig(path, self.server, self._certs().ca_cert, {"token": token})
        return path

    def _record(self) -> None:
        record = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "processes": [
                {"name": p.name, "pid": p.pid, "binary": p.argv[0], "log": str(p.log_file)}
                for p in self.processes
                if p.proc is not None
            ],
        }
        (self.state_dir / "cluster.json").write_text(json.dumps(record, indent=2) + "\n")

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the admin (system:masters)."""
        from kubernetes import client

        certs = self._certs()
        configuration = client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(certs.ca_cert)
        configuration.cert_file = str(certs.admin_cert)
        configuration.key_file = str(certs.admin_key)
        return client.ApiClient(configuration)

    def stop(self) -> None:
        """Stop the controller manager, the API server, then etcd; idempotent."""
        for proc in reversed(self.processes):
            proc.stop(timeout=10)
        self.processes.clear()
        (self.state_dir / "cluster.json").unlink(missing_ok=True)


def is_running(pid: int, binary: str) -> bool:
    """Whether ``pid`` is still the process that ran ``binary`` (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return cmdline == binary and state != "Z"


def stop_recorded(state_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop the processes ``kube-up`` recorded in ``<state_dir>/cluster.json``; return their names."""
    record_path = state_dir / "cluster.json"
    if not record_path.exists():
        return []
    stopped = []
    for entry in reversed(json.loads(record_path.read_text())["processes"]):
        pid, binary = int(entry["pid"]), str(entry["binary"])
        if not is_running(pid, binary):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_running(pid, binary):
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"{entry['name']} (pid {pid})")
    record_path.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meshplane.shared.testing.kubeenv",
        description="Start (up) or stop (down) etcd, kube-apiserver and kube-controller-manager on loopback.",
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=Path(".state/kube"))
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    if args.command == "down":
        stopped = stop_recorded(state_dir)
        print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running from {state_dir}")
        return 0
    if (state_dir / "cluster.json").exists():
        print(f"already up ({state_dir / 'cluster.json'}); `make kube-down` first", file=sys.stderr)
        return 1
    try:
        shutil.rmtree(state_dir / "etcd", ignore_errors=True)
        started = time.monotonic()
        cluster = KubeCluster(state_dir).start()
    except (KubeUnavailable, RuntimeError, AssertionError) as err:
        print(f"kube-up failed: {err}", file=sys.stderr)
        return 1
    print(f"Kubernetes API at {cluster.server} (up in {time.monotonic() - started:.1f}s)")
    for proc in cluster.processes:
        print(f"  {proc.name:<24} pid {proc.pid:<8} log {proc.log_file}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
