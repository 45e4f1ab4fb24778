"""The CNI agent's Prometheus metrics (default registry), served on ``--monitoring-addr``."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter

from meshplane.shared.tasks import TaskSupervisor

PLUGIN_EVENTS = Counter(
    "meshplane_cni_plugin_events",
    "Events reported by the CNI plugin, by command (ADD/DEL) and result (captured/skipped/deleted)",
    ["command", "result"],
)
REPAIRS = Counter(
    "meshplane_cni_repairs",
    "Repair checks of running pods, by result (captured: rules in place; repaired; broken)",
    ["result"],
)

TASK_FAILURES = TaskSupervisor.metric("meshplane_cni", REGISTRY)


def plugin_event(report: dict[str, Any]) -> None:
    """Count one plugin report (``POST /v1/events``)."""
    command = "DEL" if report.get("type") == "DEL" else "ADD"
    result = "deleted" if command == "DEL" else "captured" if report.get("captured") else "skipped"
    PLUGIN_EVENTS.labels(command, result).inc()
