"""Citadel's and the node agent's monitoring port: the shared ``/ready`` + ``/metrics`` responder."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from meshplane.shared import health


class MonitoringServer(health.MonitoringServer):
    """:class:`meshplane.shared.health.MonitoringServer`, ready while ``is_ready()`` says so."""

    def __init__(self, registry: CollectorRegistry, is_ready: Callable[[], bool]) -> None:
        super().__init__(registry, lambda: None if is_ready() else "")
