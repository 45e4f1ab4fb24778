"""How meshctl reaches the bus: ``--nats-url`` (env ``NATS_URL``), with a short deadline."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.bus.pki import BusCredentials

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def add_nats_flag(p: argparse.ArgumentParser, explicit: bool = False) -> None:
    """``--nats-url``; with ``explicit`` its default is None, so a command can tell whether it was given
    (then the caller falls back to ``$NATS_URL`` and DEFAULT_NATS_URL itself)."""
    p.add_argument(
        "--nats-url",
        default=None if explicit else os.environ.get("NATS_URL", DEFAULT_NATS_URL),
        help=f"the bus (env NATS_URL; default {DEFAULT_NATS_URL})",
    )


async def connect(url: str, bus_dir: Path | None = None) -> Bus:
    """meshctl's connection; ``bus_dir``: a bus directory whose ``meshctl`` credentials to use
    (else ``$MESHPLANE_BUS_DIR``'s, or none)."""
    creds = BusCredentials.from_dir(bus_dir / "meshctl", "meshctl") if bus_dir is not None else None
    return await Bus.connect(
        BusOptions(
            url=url,
            connect_timeout=3.0,
            publish_deadline=3.0,
            name="meshctl",
            identity="meshctl",
            credentials=creds,
        )
    )
