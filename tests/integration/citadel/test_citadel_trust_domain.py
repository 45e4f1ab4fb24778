"""Citadel follows MeshConfig's trustDomain from the bus: after a change in Galley's mesh file, a
new workload certificate carries ``spiffe://<new>/ns/<ns>/sa/<sa>``, nothing restarted; a Citadel
given ``--trust-domain`` keeps it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess, make_csr
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually
from tests.integration.galley.process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _issued_uris(citadel: CitadelProcess) -> list[str]:
    """What Citadel signs now for ns ``shop``, sa ``web`` (a CSR asking for another name)."""
    token = make_token(citadel.ca_dir, "shop", "web", "istio-ca", 600)
    _, csr = make_csr(["spiffe://asked.example/ns/shop/sa/web"])
    creds = grpc.ssl_channel_credentials(root_certificates=citadel.root_pem())
    with grpc.secure_channel(citadel.target, creds) as channel:
        stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.CreateCertificate(
            ca_pb2.IstioCertificateRequest(csr=csr),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=20,
        )
    cert = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def test_new_certificates_follow_the_trust_domain_galley_publishes(tmp_path: Path) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    started: list[CitadelProcess] = []
    try:
        (tmp_path / "config").mkdir()
        mesh_file = tmp_path / "mesh.yaml"
        mesh_file.write_text("trustDomain: old.example\n")
        env = {"CITADEL_CA_KEY_TYPE": "ec"}
        bus = ["--nats-url", nats.url]
        with run_galley(
            nats.url, tmp_path / "config", tmp_path / "galley.log", "--mesh-config", str(mesh_file)
        ) as galley:
            asyncio.run(galley.wait_ready())
            follows = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", args=bus, env=env)
            pinned = CitadelProcess(
                tmp_path / "ca2",
                tmp_path / "citadel2.log",
                args=[*bus, "--trust-domain", "pinned.example"],
                env=env,
            )
            for citadel in (follows, pinned):
                citadel.start()
                started.append(citadel)

            async def issues(citadel: CitadelProcess, domain: str) -> bool:
                return await asyncio.to_thread(_issued_uris, citadel) == [f"spiffe://{domain}/ns/shop/sa/web"]

            asyncio.run(
                eventually(lambda: issues(follows, "old.example"), "a certificate in old.example", 20)
            )
            mesh_file.write_text("trustDomain: new.example\n")
            asyncio.run(
                eventually(lambda: issues(follows, "new.example"), "a certificate in new.example", 20)
            )
            assert _issued_uris(pinned) == ["spiffe://pinned.example/ns/shop/sa/web"]
            assert follows.proc is not None and follows.proc.poll() is None
            assert "trust domain new.example (was old.example)" in follows.log()
    finally:
        for citadel in started:
            citadel.stop()
        nats.stop()
