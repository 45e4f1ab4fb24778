"""``--workers N``: N processes serve one port, metrics add up, and no worker outlives the main one."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess, http_get, make_csr
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

pytestmark = pytest.mark.timeout(90)

WORKERS = 3


def children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running(pids)


def serving_cert(port: int, root: Path) -> bytes:
    """The serving certificate (DER) one fresh TLS connection to ``port`` is answered with."""
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture
def citadel_workers(tmp_path: Path) -> Iterator[CitadelProcess]:
    proc = CitadelProcess(
        tmp_path / "ca",
        tmp_path / "citadel.log",
        args=["--workers", str(WORKERS)],
        env={"CITADEL_CA_KEY_TYPE": "ec"},
    )
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.stop()


def test_workers_answer_on_one_port_and_metrics_add_up(citadel_workers: CitadelProcess) -> None:
    root_file = citadel_workers.ca_dir / "root-cert.pem"
    # every serving process made its own serving key: distinct certificates = distinct processes
    seen: set[bytes] = set()
    for _ in range(200):
        seen.add(serving_cert(citadel_workers.grpc_port, root_file))
        if len(seen) == WORKERS:
            break
    assert len(seen) == WORKERS
    root = x509.load_pem_x509_certificate(citadel_workers.root_pem())
    for der in seen:
        x509.load_der_x509_certificate(der).verify_directly_issued_by(root)

    token = make_token(citadel_workers.ca_dir, "default", "w", "istio-ca", 600)
    creds = grpc.ssl_channel_credentials(root_certificates=citadel_workers.root_pem())
    calls = 30
    for i in range(calls):  # one connection per call, spread over the processes by the kernel
        with grpc.secure_channel(
            citadel_workers.target, creds, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)  # type: ignore[no-untyped-call]
            request = ca_pb2.IstioCertificateRequest(csr=make_csr()[1])
            if i == 0:
                with pytest.raises(grpc.RpcError) as refused:
                    stub.CreateCertificate(request, timeout=20)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            response = stub.CreateCertificate(
                request, metadata=[("authorization", f"Bearer {token}")], timeout=20
            )
            leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
                "spiffe://cluster.local/ns/default/sa/w"
            ]
    metrics = citadel_workers.metrics()
    assert metrics["citadel_server_csr_count"] == calls + 1
    assert metrics["citadel_server_success_cert_issuance_count"] == calls
    assert metrics["citadel_server_authentication_failure_count"] == 1


def test_sigterm_stops_every_worker(citadel_workers: CitadelProcess) -> None:
    assert citadel_workers.proc is not None
    kids = children(citadel_workers.proc.pid)
    assert len(kids) >= WORKERS - 1  # the workers (plus multiprocessing's resource tracker)
    assert citadel_workers.stop(timeout=30) == 0
    assert wait_gone(kids) == set()


def test_sigkill_of_the_main_process_leaves_no_orphan(citadel_workers: CitadelProcess) -> None:
    assert citadel_workers.proc is not None
    kids = children(citadel_workers.proc.pid)
    assert len(kids) >= WORKERS - 1
    os.kill(citadel_workers.proc.pid, signal.SIGKILL)
    citadel_workers.proc.wait(10)
    assert wait_gone(kids) == set()
    assert running({citadel_workers.proc.pid}) == set()


def test_a_dead_worker_is_restarted_and_ready_says_so_meanwhile(citadel_workers: CitadelProcess) -> None:
    assert citadel_workers.proc is not None
    main_pid = citadel_workers.proc.pid
    ready_url = f"http://127.0.0.1:{citadel_workers.monitoring_port}/ready"
    workers = {pid for pid in children(main_pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()}
    assert len(workers) == WORKERS - 1
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    # a SIGKILLed process with threads shows as a zombie before it has fully exited: wait for
    # the main process to notice (503) before waiting for the replacement (200)
    citadel_workers.wait_for(lambda: http_get(ready_url, 1.0)[0] == 503, 30, "not ready")
    citadel_workers.wait_for(lambda: http_get(ready_url, 1.0)[0] == 200, 60, "ready again")
    replaced = {
        pid for pid in running(children(main_pid)) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
    }
    assert len(replaced) == WORKERS - 1
    assert victim not in replaced
    seen = {
        serving_cert(citadel_workers.grpc_port, citadel_workers.ca_dir / "root-cert.pem") for _ in range(200)
    }
    assert len(seen) >= WORKERS


def _workers(pid: int) -> set[int]:
    """The worker processes of citadel ``pid`` (not multiprocessing's resource tracker)."""
    found = set()
    for kid in running(children(pid)):
        try:
            cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.add(kid)
    return found


def test_a_killed_worker_is_counted_restarted_and_ready_follows(citadel_workers: CitadelProcess) -> None:
    assert citadel_workers.proc is not None
    main = citadel_workers.proc.pid
    before = _workers(main)
    assert len(before) == WORKERS - 1
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def failures() -> float:
        return sum(
            v for k, v in citadel_workers.metrics().items() if k.startswith("citadel_task_failures_total")
        )

    citadel_workers.wait_for(lambda: failures() == 1, 30, "the dead worker counted in citadel_task_failures")
    ready = f"http://127.0.0.1:{citadel_workers.monitoring_port}/ready"
    citadel_workers.wait_for(lambda: http_get(ready, 1.0)[0] == 200, 60, "ready again with a new worker")
    after = _workers(main)
    assert victim not in after and len(after) == WORKERS - 1
    assert "citadel worker" in citadel_workers.log() and "exited (-9): restarting it" in citadel_workers.log()
