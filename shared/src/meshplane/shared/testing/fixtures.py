"""pytest fixtures: a real nats-server on a free port, and a Bus connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.natsserver import NatsServer


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
