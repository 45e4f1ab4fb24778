"""Test helpers: run a real ``meshplane-citadel`` / ``meshplane-node-agent`` subprocess, make CSRs.

Used by the citadel tests and benchmarks; processes start on free loopback ports and are
stopped by PID.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildExited, ChildProcess


def make_csr(
    uris: Sequence[str] = (), key_type: str = "ec"
) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, str]:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = (
        ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")])
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback test URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class ServiceProcess:
    """A service under test: a :class:`ChildProcess` with its log in a file, stopped by PID."""

    def __init__(self, argv: list[str], log_file: Path, env: Mapping[str, str] | None = None) -> None:
        self.child = ChildProcess(argv, log_file, env=env)

    @property
    def argv(self) -> list[str]:
        return self.child.argv

    @property
    def log_file(self) -> Path:
        assert self.child.log_file is not None
        return self.child.log_file

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc

    def start(self) -> None:
        self.child.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None: never started)."""
        return self.child.stop(timeout)

    def log(self) -> str:
        return self.child.log_text()

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until true; fail with the log if the process exits or time runs out."""
        try:
            self.child.wait_ready(ready, timeout, what)
        except (ChildExited, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{self.log()}") from None


class CitadelProcess(ServiceProcess):
    """``meshplane-citadel`` on free loopback ports."""

    def __init__(
        self,
        ca_dir: Path,
        log_file: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.ca_dir = ca_dir
        self.grpc_port = free_port()
        self.monitoring_port = free_port()
        self.mtls_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "meshplane.citadel",
            "--ca-dir",
            str(ca_dir),
            "--grpc-addr",
            f"127.0.0.1:{self.grpc_port}",
            "--grpc-mtls-addr",
            f"127.0.0.1:{self.mtls_port}",
            "--monitoring-addr",
            f"127.0.0.1:{self.monitoring_port}",
            *args,
        ]
        super().__init__(argv, log_file, env)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def mtls_target(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def start(self, timeout: float = 30.0) -> None:
        super().start()
        url = f"http://127.0.0.1:{self.monitoring_port}/ready"
        try:
            self.wait_for(lambda: http_get(url, 1.0)[0] == 200, timeout, "citadel ready")
        except RuntimeError:
            self.stop()
            raise

    def metrics(self) -> dict[str, float]:
        _, text = http_get(f"http://127.0.0.1:{self.monitoring_port}/metrics")
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("citadel_"):
                name, _, value = line.partition(" ")
                values[name] = float(value)
        return values

    def root_pem(self) -> bytes:
        return (self.ca_dir / "root-cert.pem").read_bytes()


class NodeAgentProcess(ServiceProcess):
    """``meshplane-node-agent`` for one workload: its own socket, token file and key."""

    def __init__(
        self,
        workdir: Path,
        ca_target: str,
        ca_root: Path,
        token: str | None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "sds.sock"
        self.token_file = workdir / "token"
        token_args: list[str] = []
        if token is not None:  # without a token file the agent serves per node (tokens on SDS streams)
            self.token_file.write_text(token)
            token_args = ["--token-file", str(self.token_file)]
        argv = [
            sys.executable,
            "-m",
            "meshplane.citadel.nodeagent",
            "--sds-socket",
            str(self.socket),
            "--ca-addr",
            ca_target,
            "--ca-root",
            str(ca_root),
            *token_args,
            *args,
        ]
        super().__init__(argv, workdir / "agent.log", env)

    def start(self, timeout: float = 30.0) -> None:
        super().start()
        try:
            self.wait_for(self.socket.exists, timeout, "node agent socket")
        except RuntimeError:
            self.stop()
            raise
