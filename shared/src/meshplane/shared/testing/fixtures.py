"""pytest fixtures: a real nats-server on a free port, and a Bus connected to it.

The whole suite runs on an authenticated bus: at start-up this plugin makes one bus directory
(CA, server certificate, a seed per component and the unrestricted ``admin`` identity,
``meshplane.shared.bus.pki``) and points ``$MESHPLANE_BUS_DIR`` at it, so every ``NatsServer``
starts with TLS and authorization, every service finds its own identity's credentials there, and
test code that names no identity connects as ``admin`` (``$MESHPLANE_BUS_IDENTITY``).
``MESHPLANE_BUS_PLAINTEXT=1`` runs the suite on an open bus instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.bus.client import BUS_DIR_ENV, BUS_IDENTITY_ENV
from meshplane.shared.bus.identities import ADMIN
from meshplane.shared.bus.pki import BusPki
from meshplane.shared.natsserver import NatsServer

_made: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("MESHPLANE_BUS_PLAINTEXT") == "1" or os.environ.get(BUS_DIR_ENV):
        return
    root = tempfile.mkdtemp(prefix="meshplane-bus-")
    _made.append(root)
    BusPki.create(Path(root) / "bus", admin=True)
    os.environ[BUS_DIR_ENV] = str(Path(root) / "bus")
    os.environ.setdefault(BUS_IDENTITY_ENV, ADMIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
        os.environ.pop(BUS_DIR_ENV, None)


@pytest.fixture(scope="session")
def bus_pki() -> BusPki:
    """The session's bus directory (skips when the suite runs on a plaintext bus)."""
    root = os.environ.get(BUS_DIR_ENV)
    if not root:
        pytest.skip("the suite runs on a plaintext bus (MESHPLANE_BUS_PLAINTEXT=1)")
    return BusPki.load(root)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream (file store in tmp_path), stopped after the test."""
    server = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A Bus connected to ``nats_server``; short deadlines so failures show quickly."""
    b = await Bus.connect(BusOptions(url=nats_server.url, publish_deadline=5.0))
    try:
        yield b
    finally:
        await b.close()
