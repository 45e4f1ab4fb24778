"""A disconnect is a warning only when it is a fault: our own ``close()`` is quiet (issue 12)."""

from __future__ import annotations

import logging

import pytest

from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually

LOGGER = "meshplane.shared.bus.client"


def disconnect_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "disconnected" in r.getMessage()
    ]


async def test_own_close_does_not_warn(nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    bus = await Bus.connect(BusOptions(url=nats_server.url))
    await bus.close()
    assert bus.nc.is_closed
    assert disconnect_warnings(caplog) == []
    # The close is still visible at debug level.
    assert any(f"bus connection to {nats_server.url} closed" in r.getMessage() for r in caplog.records)


async def test_lost_server_still_warns(nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    bus = await Bus.connect(BusOptions(url=nats_server.url))
    try:
        nats_server.stop()

        async def warned() -> bool:
            return disconnect_warnings(caplog) == [f"bus disconnected from {nats_server.url}"]

        await eventually(warned, "a 'bus disconnected' warning after nats-server stopped", 10)
    finally:
        await bus.close()
