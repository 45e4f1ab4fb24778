"""meshplane-galley: parse flags, set up logging, run :class:`~meshplane.galley.app.Galley` until SIGTERM."""

from __future__ import annotations

import sys

from meshplane.galley.app import Galley
from meshplane.galley.settings import parse_args
from meshplane.shared.lifecycle import run_service
from meshplane.shared.telemetry import configure_logging


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    configure_logging()
    return run_service("meshplane-galley", Galley(settings).run)


if __name__ == "__main__":
    sys.exit(main())
