"""Pure parts: durations, settings errors, TTL policy, signing ignores the CSR's names, meshctl token."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.errors import AuthenticationError, InvalidCSRError, InvalidTTLError
from meshplane.citadel.ca.keycert import create_self_signed, load_bundle
from meshplane.citadel.ca.signer import issue_chain, parse_csr
from meshplane.citadel.durations import parse_duration
from meshplane.citadel.server.authn import renewal_ttl
from meshplane.citadel.server.local_issuer import ensure_local_issuer
from meshplane.citadel.server.tls import SERVING_TTL, ServingCredentials, serving_pair
from meshplane.citadel.settings import parse_settings
from meshplane.citadel.testing import make_csr
from meshplane.ctl.main import main as meshctl


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("1h30m", 5400), ("87600h", 87600 * 3600), ("500ms", 0.5), ("20", 20), ("90d", 90 * 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "h", "10x", "1h 30m", "-5s"])
def test_bad_durations_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_settings_defaults_are_istios() -> None:
    s = parse_settings(["--ca-dir", "x"], environ={})
    assert s.grpc_addr == ("0.0.0.0", 8060)
    assert s.monitoring_addr == ("127.0.0.1", 15014)  # local-only by default
    assert s.default_ttl == dt.timedelta(hours=24)
    assert s.max_ttl == dt.timedelta(days=90)
    assert s.root_ttl == dt.timedelta(days=3650)
    assert s.root_check_interval == dt.timedelta(hours=1)
    assert s.root_grace_percentile == 20
    assert s.audiences == ("istio-ca",)
    assert s.trust_domain == "cluster.local"
    assert not s.token_review and not s.kubernetes
    assert s.sign_window == dt.timedelta(milliseconds=3)
    assert parse_settings(["--ca-dir", "x", "--sign-window", "0s"], environ={}).sign_window == dt.timedelta(0)
    in_pod = parse_settings(["--ca-dir", "x"], environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert in_pod.token_review and in_pod.kubernetes


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--grpc-addr", "nope"], {}, "expected HOST:PORT"),
        ([], {"DEFAULT_WORKLOAD_CERT_TTL": "soon"}, "DEFAULT_WORKLOAD_CERT_TTL"),
        ([], {"CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE": "150"}, "between 0 and 100"),
        (["--jwt-issuer", "no-equals-sign"], {}, "ISSUER=JWKS"),
        ([], {"CITADEL_CA_KEY_TYPE": "dsa"}, "CITADEL_CA_KEY_TYPE"),
        (["--sign-window", "soon"], {}, "--sign-window"),
        (["--sign-window", "2s"], {}, "at most 1s"),
    ],
)
def test_bad_settings_exit_with_a_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--ca-dir", "x", *argv], environ=env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_self_signed_root_files_and_modes(tmp_path: Path) -> None:
    create_self_signed(tmp_path, "example.org", "rsa", dt.timedelta(days=3650))
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    bundle = load_bundle(tmp_path)
    assert bundle.self_signed
    assert bundle.root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "example.org"
    assert isinstance(bundle.key, rsa.RSAPrivateKey) and bundle.key.key_size == 2048
    lifetime = bundle.root.not_valid_after_utc - bundle.root.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3650, minutes=2)


def test_signing_uses_only_the_given_identity(tmp_path: Path) -> None:
    create_self_signed(tmp_path, "cluster.local", "ec", dt.timedelta(days=1))
    bundle = load_bundle(tmp_path)
    _, csr = make_csr(["spiffe://cluster.local/ns/kube-system/sa/admin"])
    chain = issue_chain(bundle, csr, "spiffe://cluster.local/ns/a/sa/b", dt.timedelta(hours=1))
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/a/sa/b"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_bad_csrs_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidCSRError, match="empty"):
        parse_csr("  ")
    with pytest.raises(InvalidCSRError, match="PKCS#10"):
        parse_csr("hello")
    small = rsa.generate_private_key(65537, 1024)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(small, hashes.SHA256())
    with pytest.raises(InvalidCSRError, match="too small"):
        parse_csr(csr.public_bytes(serialization.Encoding.PEM).decode())


def test_ttl_policy(tmp_path: Path) -> None:
    create_self_signed(tmp_path, "cluster.local", "ec", dt.timedelta(days=1))
    ca = LocalAuthority.load(tmp_path, dt.timedelta(hours=24), dt.timedelta(days=90))
    assert ca.ttl_for(0) == dt.timedelta(hours=24)
    assert ca.ttl_for(-5) == dt.timedelta(hours=24)
    assert ca.ttl_for(600) == dt.timedelta(minutes=10)
    with pytest.raises(InvalidTTLError, match="greater than the max allowed TTL"):
        ca.ttl_for(91 * 86400)


def test_meshctl_token_claims_like_a_projected_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issuer, jwks = ensure_local_issuer(tmp_path, "cluster.local")
    assert (tmp_path / "issuer-key.pem").stat().st_mode & 0o777 == 0o600
    code = meshctl(
        ["token", "--ca-dir", str(tmp_path), "-n", "shop", "--service-account", "cart", "--ttl", "10m"]
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    key = jwt.PyJWKSet.from_json(jwks.read_text()).keys[0]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="istio-ca", issuer=issuer)
    assert claims["sub"] == "system:serviceaccount:shop:cart"
    assert claims["kubernetes.io"] == {"namespace": "shop", "serviceaccount": {"name": "cart"}}
    assert 590 <= claims["exp"] - claims["iat"] <= 600
    assert isinstance(key.key, ec.EllipticCurvePublicKey)


def test_local_issuer_files_are_left_alone_on_restart(tmp_path: Path) -> None:
    issuer, jwks = ensure_local_issuer(tmp_path, "cluster.local")
    files = [tmp_path / n for n in ("issuer-key.pem", "issuer-jwks.json", "issuer.json")]
    before = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]
    assert ensure_local_issuer(tmp_path, "cluster.local") == (issuer, jwks)
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == before  # nothing rewritten
    (tmp_path / "issuer.json").write_text("{}")  # damaged: restored from the key
    ensure_local_issuer(tmp_path, "cluster.local")
    assert issuer in (tmp_path / "issuer.json").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "Bad_NS", "--service-account", "a"], "not a valid Kubernetes name"),
        (["-n", "ns", "--service-account", "a", "--ttl", "forever"], "--ttl"),
    ],
)
def test_meshctl_token_bad_input(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_local_issuer(tmp_path, "cluster.local")
    assert meshctl(["token", "--ca-dir", str(tmp_path), *argv]) != 0
    assert message in capsys.readouterr().err


def test_meshctl_token_without_citadel_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a CA directory that cannot be read is a read error: exit 2 (meshctl's exit codes)
    assert meshctl(["token", "--ca-dir", str(tmp_path / "nope"), "-n", "a", "--service-account", "b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshctl token: ") and "not found" in err and "Traceback" not in err


def test_citadel_with_broken_ca_files_exits_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "ca-key.pem").write_text("junk")
    out = subprocess.run(
        [sys.executable, "-m", "meshplane.citadel", "--ca-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "ca-key.pem" in out.stderr and "not an unencrypted PEM private key" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_citadel_in_kubernetes_mode_without_a_kubeconfig_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(tmp_path / "missing-kubeconfig")
    out = subprocess.run(
        [sys.executable, "-m", "meshplane.citadel", "--ca-dir", str(tmp_path / "ca"), "--kubernetes"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1
    assert "Kubernetes mode needs an in-cluster config or a kubeconfig" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_serving_certificate_sans_and_renewal_schedule(tmp_path: Path) -> None:
    create_self_signed(tmp_path, "cluster.local", "ec", dt.timedelta(days=3650))
    bundle = load_bundle(tmp_path)
    _, chain = serving_pair(bundle, ("citadel.mesh.svc", "10.0.0.7"))
    leaf = x509.load_pem_x509_certificate(chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"istio-ca", "localhost", "citadel.mesh.svc"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.0.0.7"}
    leaf.verify_directly_issued_by(bundle.root)
    serving = ServingCredentials(bundle, ())
    assert not serving.due(serving.issued + SERVING_TTL / 2 - dt.timedelta(seconds=1))
    assert serving.due(serving.issued + SERVING_TTL / 2)


def test_renewal_ttl_is_capped_to_the_presented_certificates_expiry() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    expires = now + dt.timedelta(seconds=601)
    assert renewal_ttl(0, expires, now) == 600  # "as long as allowed": what is left, less a second
    assert renewal_ttl(86400, expires, now) == 600
    assert renewal_ttl(60, expires, now) == 60
    with pytest.raises(AuthenticationError, match="expires too soon"):
        renewal_ttl(0, now + dt.timedelta(seconds=1), now)


def test_trust_domain_from_mesh_config_unless_the_flag_gives_it(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("trustDomain: example.org\nrootNamespace: meshplane-system\n")
    given = ["--ca-dir", "x", "--mesh-config", str(mesh)]
    assert parse_settings(given, environ={}).trust_domain == "example.org"
    assert parse_settings([*given, "--trust-domain", "other.org"], environ={}).trust_domain == "other.org"
