"""meshplane-citadel: the CA process (``meshplane-citadel --ca-dir DIR ...``)."""

from __future__ import annotations

import asyncio
import sys

from meshplane.citadel import app
from meshplane.citadel.ca.errors import CAError
from meshplane.citadel.settings import parse_settings
from meshplane.shared.lifecycle import run_service
from meshplane.shared.telemetry import configure_logging, configure_tracing


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging()
    configure_tracing("meshplane-citadel")
    try:
        authority = app.prepare_authority(settings)
    except (CAError, OSError, ValueError) as exc:
        print(f"meshplane-citadel: cannot use --ca-dir {settings.ca_dir}: {exc}", file=sys.stderr)
        return 1

    async def run(stop: asyncio.Event) -> None:
        await app.run(settings, authority, stop)

    return run_service("meshplane-citadel", run)


if __name__ == "__main__":
    sys.exit(main())
