"""Pilot's xDS serving credentials: gRPC's handshake hook gets a renewed pair exactly once, and a
pair in files is read, re-read when it changes, and refused with a message naming the files."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest

from meshplane.pilot.security.xds_tls import XdsCredentials, file_source
from meshplane.shared.citadelclient import CitadelError
from meshplane.shared.testing.kubecerts import write_cluster_certs


async def test_a_changed_file_pair_reaches_the_next_handshake_once(tmp_path: Path) -> None:
    certs = write_cluster_certs(tmp_path / "a")
    live = tmp_path / "live"
    live.mkdir()
    for name, src in (
        ("tls.crt", certs.serving_cert),
        ("tls.key", certs.serving_key),
        ("ca.crt", certs.ca_cert),
    ):
        shutil.copy(src, live / name)
    creds = XdsCredentials(file_source(live / "tls.crt", live / "tls.key", live / "ca.crt"), max_refresh=30)
    assert await creds.obtain(asyncio.Event())
    assert isinstance(creds.server_credentials(), grpc.ServerCredentials)
    assert creds._fetch() is None  # nothing new since the server was given its credentials
    first = creds.current

    assert await creds.obtain(asyncio.Event())  # same files: nothing to hand over
    assert creds._fetch() is None and creds.current is first

    other = write_cluster_certs(tmp_path / "b")
    shutil.copy(other.serving_cert, live / "tls.crt")
    shutil.copy(other.serving_key, live / "tls.key")
    assert await creds.obtain(asyncio.Event())
    assert creds.current is not None and creds.current != first
    assert creds._fetch() is not None  # the next handshake switches to the new pair ...
    assert creds._fetch() is None  # ... and later ones keep it


async def test_unreadable_files_are_named_and_retried_until_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = file_source(tmp_path / "missing.crt", tmp_path / "k", tmp_path / "ca")
    with pytest.raises(CitadelError, match=r"cannot read --tls-cert .*missing\.crt"):
        await source()
    stop = asyncio.Event()
    creds = XdsCredentials(source)
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert not await creds.obtain(stop)
    assert "no xDS serving certificate yet" in caplog.text and "missing.crt" in caplog.text
