"""meshplane-cni-agent: skeleton entry point (starts, logs, stops cleanly)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from meshplane.shared.lifecycle import run_service
from meshplane.shared.telemetry import configure_logging

log = logging.getLogger("meshplane.cni.agent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshplane-cni-agent")
    parser.parse_known_args(argv)
    configure_logging()

    async def run(stop: asyncio.Event) -> None:
        log.info("ready")
        await stop.wait()

    return run_service("meshplane-cni-agent", run)


if __name__ == "__main__":
    sys.exit(main())
