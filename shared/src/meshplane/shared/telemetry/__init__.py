"""Logging and tracing set-up shared by every service."""

from meshplane.shared.telemetry.logs import configure_logging

__all__ = ["configure_logging"]
