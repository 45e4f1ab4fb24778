"""A plugged-in CA from cacerts-style files: used for signing, and reloaded when the files change."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from meshplane.citadel.ca.keycert import key_pem, load_bundle, make_root, to_pem, write_private
from meshplane.citadel.testing import CitadelProcess, make_csr
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

pytestmark = pytest.mark.timeout(90)


def intermediate(
    root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


def write_cacerts(
    ca_dir: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, root: x509.Certificate
) -> None:
    ca_dir.mkdir(parents=True, exist_ok=True)
    write_private(ca_dir / "ca-key.pem", key_pem(key))
    (ca_dir / "ca-cert.pem").write_text(to_pem(cert))
    (ca_dir / "cert-chain.pem").write_text(to_pem(cert) + to_pem(root))
    (ca_dir / "root-cert.pem").write_text(to_pem(root))


@pytest.fixture
def root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, make_root(key, "cluster.local", dt.timedelta(days=365))


@pytest.fixture
def plugged(
    tmp_path: Path, root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> Iterator[CitadelProcess]:
    ikey, icert = intermediate(*root, "intermediate-1")
    write_cacerts(tmp_path / "cacerts", ikey, icert, root[1])
    proc = CitadelProcess(tmp_path / "cacerts", tmp_path / "citadel.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def issue(stub: ca_pb2_grpc.IstioCertificateServiceStub, ca_dir: Path) -> list[str]:
    token = make_token(ca_dir, "default", "a", "istio-ca", 600)
    request = ca_pb2.IstioCertificateRequest(csr=make_csr()[1])
    response = stub.CreateCertificate(request, metadata=[("authorization", f"Bearer {token}")], timeout=20)
    return list(response.cert_chain)


def org(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string()


def test_plugged_in_ca_signs_and_reloads(
    plugged: CitadelProcess,
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
) -> None:
    stub = stub_factory(plugged.target, plugged.root_pem())
    chain = issue(stub, plugged.ca_dir)
    assert len(chain) == 3  # leaf, intermediate, root
    assert org(chain[0]) == "O=intermediate-1"
    assert chain[2] == to_pem(root[1])
    # the operator rotates the intermediate: new files, same root
    ikey, icert = intermediate(*root, "intermediate-2")
    write_cacerts(plugged.ca_dir, ikey, icert, root[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        chain = issue(stub, plugged.ca_dir)
        if org(chain[0]) == "O=intermediate-2":
            break
        time.sleep(0.1)
    assert org(chain[0]) == "O=intermediate-2"
    assert chain[1] == to_pem(icert)
    assert chain[2] == to_pem(root[1])
    # a broken file is refused and the previous material stays in use
    (plugged.ca_dir / "ca-cert.pem").write_text("garbage")
    plugged.wait_for(lambda: "could not be loaded" in plugged.log(), 30, "the broken file refused")
    assert org(issue(stub, plugged.ca_dir)[0]) == "O=intermediate-2"


def test_kubernetes_tls_layout_is_loaded(
    tmp_path: Path, root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> None:
    ikey, icert = intermediate(*root, "tls-layout")
    write_private(tmp_path / "tls.key", key_pem(ikey))
    (tmp_path / "tls.crt").write_text(to_pem(icert))
    (tmp_path / "ca.crt").write_text(to_pem(root[1]))
    bundle = load_bundle(tmp_path)
    assert bundle.cert == icert
    assert bundle.root == root[1]
    assert not bundle.self_signed


def test_a_removed_ca_dir_is_a_counted_failure_and_the_watch_comes_back(
    plugged: CitadelProcess,
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
    tmp_path: Path,
) -> None:
    stub = stub_factory(plugged.target, plugged.root_pem())
    assert org(issue(stub, plugged.ca_dir)[0]) == "O=intermediate-1"
    moved = tmp_path / "moved-away"
    plugged.ca_dir.rename(moved)  # a watch on a removed directory would never report again
    failures = 'citadel_task_failures_total{task="ca-dir-watch"}'
    plugged.wait_for(lambda: plugged.metrics().get(failures, 0) >= 1, 30, "the dead watch counted")
    assert "task ca-dir-watch failed" in plugged.log() and "Traceback" in plugged.log()
    moved.rename(plugged.ca_dir)
    ikey, icert = intermediate(*root, "intermediate-2")
    write_cacerts(plugged.ca_dir, ikey, icert, root[1])
    plugged.wait_for(
        lambda: org(issue(stub, plugged.ca_dir)[0]) == "O=intermediate-2", 60, "the restarted watch reloading"
    )
