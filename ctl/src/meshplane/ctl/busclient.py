"""How meshctl reaches the bus: ``--nats-url`` (env ``NATS_URL``), with a short deadline."""

from __future__ import annotations

import argparse
import os

from meshplane.shared.bus import Bus, BusOptions


def add_nats_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="the bus (env NATS_URL; default nats://127.0.0.1:4222)",
    )


async def connect(url: str) -> Bus:
    return await Bus.connect(
        BusOptions(url=url, connect_timeout=3.0, publish_deadline=3.0, name="meshctl", identity="meshctl")
    )
