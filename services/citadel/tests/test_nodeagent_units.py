"""Node agent pure parts: flags, renewal timing, which roots ROOTCA carries, SDS resource shapes."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from meshplane.citadel.ca.keycert import create_self_signed, load_bundle, to_pem
from meshplane.citadel.ca.signer import issue_chain
from meshplane.citadel.nodeagent.__main__ import main as agent_main
from meshplane.citadel.nodeagent.cache import ROOT_SECRET, WORKLOAD_SECRET, SecretCache, WorkloadCert
from meshplane.citadel.nodeagent.caclient import CAClient
from meshplane.citadel.nodeagent.refusals import RefusedTokens
from meshplane.citadel.nodeagent.rotation import make_key_and_csr, refresh_delay
from meshplane.citadel.nodeagent.settings import parse_agent_settings
from meshplane.citadel.nodeagent.workloads import NoCredential, Workloads, rotation_task, token_expiry

REQUIRED = ["--sds-socket", "s", "--ca-addr", "127.0.0.1:8060", "--ca-root", "r", "--token-file", "t"]


def test_agent_defaults() -> None:
    s = parse_agent_settings(REQUIRED, environ={})
    assert s.key_type == "ec"
    assert s.cert_ttl == dt.timedelta(hours=24)
    assert str(s.ca_root) == "r"
    assert str(parse_agent_settings(["--sds-socket", "s", "--ca-addr", "h:1"], environ={}).ca_root) == (
        "/var/run/secrets/istio/root-cert.pem"
    )
    assert parse_agent_settings(REQUIRED, environ={"SECRET_TTL": "1h"}).cert_ttl == dt.timedelta(hours=1)
    assert s.trust_domain == "cluster.local"


def test_agent_trust_domain_comes_from_the_mesh_config_unless_given(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    mesh.write_text("trustDomain: example.org\n")
    assert (
        parse_agent_settings([*REQUIRED, "--mesh-config", str(mesh)], environ={}).trust_domain
        == "example.org"
    )
    given = [*REQUIRED, "--mesh-config", str(mesh), "--trust-domain", "other.org"]
    assert parse_agent_settings(given, environ={}).trust_domain == "other.org"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cert-ttl", "soon"], "--cert-ttl"),
        (["--cert-ttl", "1s"], "too short"),
        (["--key-type", "dsa"], "--key-type"),
        (["--credential-namespace", "Not_A_Namespace"], "not a Kubernetes namespace name"),
    ],
)
def test_agent_bad_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_agent_settings([*REQUIRED, *argv], environ={})
    assert message in capsys.readouterr().err


def _cert(tmp_path: Path, ttl: dt.timedelta) -> WorkloadCert:
    if not (tmp_path / "ca-key.pem").exists():
        create_self_signed(tmp_path, "cluster.local", "ec", dt.timedelta(days=1))
    key_pem, csr = make_key_and_csr("ec")
    chain = issue_chain(load_bundle(tmp_path), csr, "spiffe://cluster.local/ns/a/sa/b", ttl)
    return WorkloadCert.from_chain(key_pem, chain, dt.datetime.now(dt.UTC))


def test_renewal_at_half_life_with_jitter(tmp_path: Path) -> None:
    cert = _cert(tmp_path, dt.timedelta(seconds=100))
    delays = [refresh_delay(cert, cert.received) for _ in range(50)]
    assert all(45 - 0.5 <= d <= 50 + 0.5 for d in delays)
    assert len({round(d, 3) for d in delays}) > 1  # jittered


async def test_rootca_prefers_bus_roots_and_default_carries_the_chain(tmp_path: Path) -> None:
    cache = SecretCache()
    assert cache.secret(WORKLOAD_SECRET) is None and cache.secret(ROOT_SECRET) is None
    cert = _cert(tmp_path, dt.timedelta(hours=1))
    await cache.set_cert(cert)
    root_from_ca = cache.secret(ROOT_SECRET)
    assert root_from_ca is not None
    assert root_from_ca.validation_context.trusted_ca.inline_bytes.decode() == cert.chain[-1]
    default = cache.secret(WORKLOAD_SECRET)
    assert default is not None
    leaf = x509.load_pem_x509_certificates(default.tls_certificate.certificate_chain.inline_bytes)[0]
    assert f"{leaf.serial_number:x}" == cert.version
    assert default.tls_certificate.private_key.inline_bytes == cert.key_pem
    seen = cache.generation
    create_self_signed(tmp_path / "other", "cluster.local", "ec", dt.timedelta(days=1))
    other = load_bundle(tmp_path / "other").root
    await cache.set_bus_roots([cert.chain[-1], to_pem(other)])
    assert cache.generation != seen
    rootca = cache.secret(ROOT_SECRET)
    assert rootca is not None
    assert rootca.validation_context.trusted_ca.inline_bytes.decode() == cert.chain[-1] + to_pem(other)
    assert cache.secret("file-root:/etc/ssl/ca.pem") is None


def _jwt(**claims: object) -> str:
    return jwt.encode({"sub": "system:serviceaccount:default:a", **claims}, "k" * 32, algorithm="HS256")


def test_token_expiry_reads_exp_and_tolerates_opaque_tokens() -> None:
    assert token_expiry(_jwt(exp=1_900_000_000)) == 1_900_000_000
    assert token_expiry(_jwt()) is None
    assert token_expiry("not-a-jwt") is None


async def test_expired_stream_token_is_refused_without_asking_the_ca(tmp_path: Path) -> None:
    workloads = Workloads(CAClient("127.0.0.1:9", tmp_path / "root.pem"), "ec", dt.timedelta(hours=1), None)
    with pytest.raises(NoCredential, match="expired"):
        await workloads.acquire(_jwt(exp=int(time.time()) - 5))
    await workloads.close()


async def test_a_stream_token_that_is_not_a_jwt_is_refused_without_asking_the_ca(tmp_path: Path) -> None:
    workloads = Workloads(CAClient("127.0.0.1:9", tmp_path / "root.pem"), "ec", dt.timedelta(hours=1), None)
    for _ in range(2):  # the second time from the refusal table
        with pytest.raises(NoCredential, match="not a JWT"):
            await workloads.acquire("garbage")
    assert not workloads.supervisor.running(rotation_task("anything"))
    await workloads.close()


def test_refused_tokens_back_off_per_token_doubling_to_a_cap() -> None:
    now = [0.0]
    table = RefusedTokens(clock=lambda: now[0])
    delays = [table.refuse("a", "bad") for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert table.refused("b") is None  # per token
    reason = table.refused("a")
    assert reason is not None and reason.startswith("bad; refused for another 60.0s")
    now[0] = 60.0
    assert table.refused("a") is None  # the backoff ran out: one more try is allowed


def test_credential_namespace_without_a_kubernetes_config_exits_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    argv = ["--sds-socket", str(tmp_path / "s"), "--ca-addr", "127.0.0.1:9", "--credential-namespace", "gw"]
    assert agent_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshplane-node-agent: --credential-namespace: ")
    assert "Traceback" not in err
