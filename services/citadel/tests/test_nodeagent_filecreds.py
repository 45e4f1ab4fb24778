"""The node agent's file credentials: Istio's ``file-cert:``/``file-root:`` names read from files,
unanswered while a file is missing, re-read on change, and confined to the allowed directories."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshplane.citadel.nodeagent.filecreds import FileCredentials, system_bundle
from meshplane.citadel.nodeagent.settings import parse_agent_settings

BASE = ["--sds-socket", "s", "--ca-addr", "127.0.0.1:8060"]


def test_file_cert_and_root_are_read_from_the_files(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    (tmp_path / "ca.pem").write_bytes(b"ROOTS")
    files = FileCredentials(None)
    cert = files.get(f"file-cert:{tmp_path}/c.pem~{tmp_path}/k.pem")
    assert cert is not None
    assert cert[0].tls_certificate.certificate_chain.inline_bytes == b"CERT"
    assert cert[0].tls_certificate.private_key.inline_bytes == b"KEY"
    root = files.get(f"file-root:{tmp_path}/ca.pem")
    assert root is not None and root[0].validation_context.trusted_ca.inline_bytes == b"ROOTS"
    assert files.get("file-cert:/no-tilde.pem") is None


def test_system_root_is_the_os_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(b"SYSTEM")
    assert system_bundle((str(tmp_path / "absent"), str(bundle))) == bundle
    found = FileCredentials((), system=bundle).get("file-root:system")  # allowed even when confined
    assert found is not None and found[0].validation_context.trusted_ca.inline_bytes == b"SYSTEM"


def test_missing_file_is_unanswered_then_served_once_it_appears(tmp_path: Path) -> None:
    async def go() -> None:
        files = FileCredentials(None)
        name = f"file-root:{tmp_path}/late.pem"
        assert files.get(name) is None
        seen = files.generation
        assert not await files.check()
        (tmp_path / "late.pem").write_bytes(b"NOW")
        assert await files.check()
        assert await asyncio.wait_for(files.wait_changed(seen), 1) != seen
        found = files.get(name)
        assert found is not None and found[0].validation_context.trusted_ca.inline_bytes == b"NOW"
        (tmp_path / "late.pem").write_bytes(b"NEWER")
        assert await files.check()  # a changed file is pushed again

    asyncio.run(go())


def test_a_per_node_agent_serves_only_the_allowed_directories(tmp_path: Path) -> None:
    allowed, other = tmp_path / "certs", tmp_path / "secret"
    for d in (allowed, other):
        d.mkdir()
        (d / "ca.pem").write_bytes(b"X")
    (allowed / "escape.pem").symlink_to(other / "ca.pem")
    files = FileCredentials((allowed,))
    assert files.get(f"file-root:{allowed}/ca.pem") is not None
    assert files.get(f"file-root:{other}/ca.pem") is None
    assert files.get(f"file-root:{allowed}/escape.pem") is None
    assert files.get(f"file-root:{allowed}/../secret/ca.pem") is None


def test_file_credential_flags() -> None:
    one = parse_agent_settings([*BASE, "--token-file", "t"], environ={})
    assert one.file_credential_dirs is None  # one workload: any path, as Istio's agent
    node = parse_agent_settings(BASE, environ={})
    assert node.file_credential_dirs == ()
    listed = parse_agent_settings(
        [*BASE, "--file-credential-dir", "/etc/certs", "--file-credential-poll", "1"]
    )
    assert listed.file_credential_dirs == (Path("/etc/certs"),)
    assert listed.file_credential_poll == 1.0
