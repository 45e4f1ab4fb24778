"""The ``kubernetes://`` SDS resources built from Secret data: Istio's shapes and what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshplane.citadel.nodeagent.kubecreds import KubeSecrets, resource
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.testing.certs import write_self_signed


def _pair(tmp_path: Path, name: str) -> tuple[bytes, bytes]:
    cert, key = write_self_signed(tmp_path / name, name)
    return cert.read_bytes(), key.read_bytes()


def _build(ref: str, secrets: dict[str, dict[str, bytes] | None]) -> tuple[Any, list[str]]:
    problems: list[str] = []
    found = resource(ref, secrets, lambda name, why: problems.append(f"{name}: {why}"))
    return found, problems


def test_tls_and_generic_secrets_give_the_certificate(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "a")
    for data in ({"tls.crt": cert, "tls.key": key}, {"cert": cert, "key": key}):
        found, problems = _build("cred", {"cred": data})
        assert found is not None and problems == []
        secret, version = found
        assert secret.name == "kubernetes://cred"
        assert secret.tls_certificate.certificate_chain.inline_bytes == cert
        assert secret.tls_certificate.private_key.inline_bytes == key
        assert len(version) == 16


def test_the_ca_comes_from_the_cacert_secret_before_the_credentials_own_keys(tmp_path: Path) -> None:
    own, separate = _pair(tmp_path, "own")[0], _pair(tmp_path, "separate")[0]
    for key in ("cacert", "ca.crt"):
        found, _ = _build("cred-cacert", {"cred": {key: own}, "cred-cacert": None})
        assert found is not None and found[0].validation_context.trusted_ca.inline_bytes == own
    found, _ = _build("cred-cacert", {"cred": {"cacert": own}, "cred-cacert": {"ca.crt": separate}})
    assert found is not None and found[0].validation_context.trusted_ca.inline_bytes == separate


def test_missing_incomplete_or_unparsable_secrets_are_not_served(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "a")
    assert _build("cred", {}) == (None, [])  # not listed yet
    assert _build("cred", {"cred": None}) == (None, [])  # no such Secret
    assert _build("cred-cacert", {"cred": {"cert": cert, "key": key}, "cred-cacert": None}) == (None, [])
    found, problems = _build("cred", {"cred": {"tls.crt": cert}})
    assert found is None and problems == ["cred: it has neither tls.crt/tls.key nor cert/key"]
    found, problems = _build("cred", {"cred": {"cert": b"not pem", "key": key}})
    assert found is None and problems[0].startswith("cred: its certificate or key is not PEM")
    found, problems = _build("cred-cacert", {"cred": {}, "cred-cacert": {"cacert": b"junk"}})
    assert found is None and problems[0].startswith("cred-cacert: its CA certificate is not PEM")


async def test_names_that_are_not_secret_names_or_name_another_namespace_are_never_watched() -> None:
    supervisor = TaskSupervisor("test")
    secrets = KubeSecrets(None, "gw", supervisor)  # no API client: nothing may be asked of it
    for name in (
        "kubernetes://other/cred",
        "kubernetes://a,metadata.name!=b",
        "kubernetes://",
        "kubernetes://A",
    ):
        assert secrets.get(name) is None
    assert secrets.watched == frozenset()
    await supervisor.aclose()
