"""CreateCertificate against a running meshplane-citadel over real TLS gRPC."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshplane.citadel.testing import CitadelProcess, make_csr, private_pem
from meshplane.ctl.token import make_token
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

pytestmark = pytest.mark.timeout(60)

SA_A = "spiffe://cluster.local/ns/default/sa/a"
SA_B = "spiffe://cluster.local/ns/default/sa/b"


def call(
    stub: ca_pb2_grpc.IstioCertificateServiceStub, csr: str, token: str | None = None, ttl: int = 0
) -> ca_pb2.IstioCertificateResponse:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=ttl)
    response: ca_pb2.IstioCertificateResponse = stub.CreateCertificate(request, metadata=metadata, timeout=20)
    return response


def uris(cert_pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def lifetime(cert_pem: str) -> dt.timedelta:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def test_identity_comes_from_the_token_not_the_csr(
    citadel: CitadelProcess, stub: ca_pb2_grpc.IstioCertificateServiceStub, token_for: Callable[..., str]
) -> None:
    _, csr = make_csr([SA_B])
    response = call(stub, csr, token_for(sa="a"))
    assert uris(response.cert_chain[0]) == [SA_A]
    # leaf first, root last; the root is the one clients are told to trust
    assert len(response.cert_chain) == 2
    assert response.cert_chain[-1].encode() == citadel.root_pem()
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    root = x509.load_pem_x509_certificate(response.cert_chain[-1].encode())
    leaf.verify_directly_issued_by(root)
    assert root.subject.rfc4514_string() == "O=cluster.local"
    expiry = citadel.metrics()["citadel_server_root_cert_expiry_timestamp"]
    assert expiry == root.not_valid_after_utc.timestamp()


def test_default_ttl_is_24h_and_requested_ttl_is_honoured(
    stub: ca_pb2_grpc.IstioCertificateServiceStub, token_for: Callable[..., str]
) -> None:
    _, csr = make_csr()
    default = lifetime(call(stub, csr, token_for()).cert_chain[0])
    assert abs(default - dt.timedelta(hours=24, minutes=1)) < dt.timedelta(seconds=5)
    asked = lifetime(call(stub, csr, token_for(), ttl=3600).cert_chain[0])
    assert abs(asked - dt.timedelta(hours=1, minutes=1)) < dt.timedelta(seconds=5)


def test_ttl_above_max_is_refused(
    citadel: CitadelProcess, stub: ca_pb2_grpc.IstioCertificateServiceStub, token_for: Callable[..., str]
) -> None:
    issued = citadel.metrics()["citadel_server_success_cert_issuance_count"]
    _, csr = make_csr()
    with pytest.raises(grpc.RpcError) as err:
        call(stub, csr, token_for(), ttl=91 * 86400)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "greater than the max allowed TTL" in (err.value.details() or "")
    assert citadel.metrics()["citadel_server_success_cert_issuance_count"] == issued


def _foreign_token(ca_dir: Path) -> str:
    """Right issuer and kid, but signed by a key Citadel never saw."""
    info = json.loads((ca_dir / "issuer.json").read_text())
    now = int(time.time())
    claims = {"iss": info["issuer"], "sub": "system:serviceaccount:default:a", "aud": ["istio-ca"]}
    claims |= {"iat": now, "exp": now + 600}
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": info["kid"]})


def test_bad_callers_are_refused_and_nothing_is_issued(
    citadel: CitadelProcess, stub: ca_pb2_grpc.IstioCertificateServiceStub, token_for: Callable[..., str]
) -> None:
    before = citadel.metrics()
    _, csr = make_csr()
    expired = token_for(ttl=-60)  # exp a minute ago
    cases = {
        "no token": None,
        "expired token": expired,
        "other audience": token_for(audience="some-other-audience"),
        "unknown signing key": _foreign_token(citadel.ca_dir),
        "not a JWT": "definitely-not-a-jwt",
    }
    for label, token in cases.items():
        with pytest.raises(grpc.RpcError) as err:
            call(stub, csr, token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, label
        assert err.value.details() == "request authenticate failure", label  # opaque to the caller
    with pytest.raises(grpc.RpcError) as err:
        call(
            stub,
            "-----BEGIN CERTIFICATE REQUEST-----\njunk\n-----END CERTIFICATE REQUEST-----\n",
            token_for(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = citadel.metrics()
    assert (
        after["citadel_server_success_cert_issuance_count"]
        == before["citadel_server_success_cert_issuance_count"]
    )
    auth_failures = (
        after["citadel_server_authentication_failure_count"]
        - before["citadel_server_authentication_failure_count"]
    )
    assert auth_failures == len(cases)
    parse = after["citadel_server_csr_parsing_err_count"] - before["citadel_server_csr_parsing_err_count"]
    assert parse == 1
    assert after["citadel_server_csr_count"] - before["citadel_server_csr_count"] == len(cases) + 1
    # the detail is in the log, not in the response
    assert "Signature verification failed" in citadel.log() or "Signature" in citadel.log()


def test_renewal_with_client_certificate(
    citadel: CitadelProcess,
    stub: ca_pb2_grpc.IstioCertificateServiceStub,
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
    token_for: Callable[..., str],
) -> None:
    key, csr = make_csr()
    first = call(stub, csr, token_for(sa="a"))
    mtls = stub_factory(
        citadel.mtls_target, citadel.root_pem(), (private_pem(key), first.cert_chain[0].encode())
    )
    _, csr2 = make_csr([SA_B])
    renewed = call(mtls, csr2)  # no token: the client certificate is the credential
    assert uris(renewed.cert_chain[0]) == [SA_A]


def test_renewal_by_certificate_never_outlives_the_certificate_presented(
    citadel: CitadelProcess,
    stub: ca_pb2_grpc.IstioCertificateServiceStub,
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
    token_for: Callable[..., str],
) -> None:
    """A stolen token is worth one certificate lifetime: renewals by certificate, whatever TTL they
    ask for, end when the certificate first issued for the token does."""
    key, csr = make_csr()
    issued = call(stub, csr, token_for(sa="a"), ttl=600).cert_chain[0]
    original_expiry = x509.load_pem_x509_certificate(issued.encode()).not_valid_after_utc
    for ttl in (0, 3600, 300):  # default (24 h), more than is left, less than is left
        mtls = stub_factory(citadel.mtls_target, citadel.root_pem(), (private_pem(key), issued.encode()))
        key, csr = make_csr()
        renewed = call(mtls, csr, ttl=ttl).cert_chain[0]
        expiry = x509.load_pem_x509_certificate(renewed.encode()).not_valid_after_utc
        assert uris(renewed) == [SA_A]
        assert expiry < original_expiry
        if ttl == 300:
            assert lifetime(renewed) <= dt.timedelta(seconds=300 + 60)  # backdated by at most a minute
        issued = renewed
    # the token itself still gets a full certificate
    assert lifetime(call(stub, make_csr()[1], token_for(sa="a"), ttl=3600).cert_chain[0]) >= dt.timedelta(
        seconds=3600
    )


def test_client_certificate_from_another_ca_is_refused(
    citadel: CitadelProcess,
    stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub],
    tmp_path: Path,
) -> None:
    other = CitadelProcess(tmp_path / "other-ca", tmp_path / "other.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    other.start()
    try:
        key, csr = make_csr()
        token = make_token(other.ca_dir, "default", "a", "istio-ca", 600)
        foreign = call(stub_factory(other.target, other.root_pem()), csr, token)
    finally:
        other.stop()
    mtls = stub_factory(
        citadel.mtls_target, citadel.root_pem(), (private_pem(key), foreign.cert_chain[0].encode())
    )
    with pytest.raises(grpc.RpcError) as err:
        call(mtls, make_csr()[1])
    # the TLS handshake itself fails: the certificate does not chain to this CA
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_default_rsa_ca_signs_ec_and_rsa_csrs(
    tmp_path: Path, stub_factory: Callable[..., ca_pb2_grpc.IstioCertificateServiceStub]
) -> None:
    rsa_ca = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log")  # default key type: RSA 2048
    rsa_ca.start()
    try:
        stub = stub_factory(rsa_ca.target, rsa_ca.root_pem())
        token = make_token(rsa_ca.ca_dir, "default", "a", "istio-ca", 600)
        for key_type in ("ec", "rsa"):
            chain = call(stub, make_csr(key_type=key_type)[1], token).cert_chain
            root = x509.load_pem_x509_certificate(chain[-1].encode())
            assert isinstance(root.public_key(), rsa.RSAPublicKey)
            x509.load_pem_x509_certificate(chain[0].encode()).verify_directly_issued_by(root)
            assert uris(chain[0]) == [SA_A]
    finally:
        rsa_ca.stop()
