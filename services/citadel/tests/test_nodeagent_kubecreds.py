"""The ``kubernetes://`` SDS resources built from Secret data: Istio's shapes and what is refused."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kube_client

from meshplane.citadel.nodeagent.kubecreds import KubeSecrets, resource
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually


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


def _secret(name: str, rv: str, data: dict[str, bytes]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return {"metadata": {"name": name, "namespace": "gw", "resourceVersion": rv}, "data": encoded}


async def test_a_secret_is_watched_alone_in_its_namespace_and_served_once_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _pair(tmp_path, "a")
    path = "/api/v1/namespaces/gw/secrets"
    api = RecordedAPI()
    api.add_list(path, {"kind": "SecretList", "metadata": {"resourceVersion": "1"}, "items": []})
    added = _secret("cred", "2", {"tls.crt": cert, "tls.key": key})
    api.add_watch(path, [{"type": "ADDED", "object": added}])
    # the server then ends that watch; the one resumed from "2" is held open
    supervisor = TaskSupervisor("test")
    caplog.set_level(logging.INFO, "meshplane.citadel.nodeagent.kubecreds")
    with serve(api) as url:
        secrets = KubeSecrets(kube_client.ApiClient(kube_client.Configuration(host=url)), "gw", supervisor)
        assert secrets.get("kubernetes://cred") is None  # not listed yet: the watch starts now

        async def resumed() -> bool:
            return len(api.requested(path, watch=True)) == 2

        await eventually(resumed, "the watch resumed after the server ended it")
        found = secrets.get("kubernetes://cred")
        assert found is not None and found[0].tls_certificate.certificate_chain.inline_bytes == cert
        assert secrets.watched == frozenset({"cred"})
        secrets.close()
        await supervisor.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        "Secret gw/cred: absent",  # the first list: not there
        "Secret gw/cred: keys ['tls.crt', 'tls.key']",
    ]
    requests = api.requested(path, watch=False) + api.requested(path, watch=True)
    assert [q["fieldSelector"] for q in requests] == ["metadata.name=cred"] * 3
    assert [q.get("resourceVersion") for q in api.requested(path, watch=True)] == ["1", "2"]
    assert supervisor.failures("secret-cred") == 0
