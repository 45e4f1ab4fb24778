"""What happened to each pod's capture on this node: kept in memory, published to the bus.

Bucket ``mesh-cni``, key ``<node>.<namespace>.<pod>``, value :class:`CNIEvent` (the latest
event for that pod).  The bus is optional (local runs without one) and attached once connected
(:meth:`EventLog.attach` publishes what was kept meanwhile); when it is down the event is logged
and kept locally, never lost silently and never fatal to the agent.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from meshplane.proto.bus.v1 import cni_pb2
from meshplane.shared.bus import Bus, BusError, TypedKV, make_key

log = logging.getLogger(__name__)

CNI_BUCKET = "mesh-cni"
Kind = cni_pb2.CNIEvent.Kind


def event_from_plugin(node: str, report: dict[str, Any]) -> cni_pb2.CNIEvent:
    """Turn the plugin's report (``POST /v1/events``) into a bus event."""
    if report.get("type") == "DEL":
        kind = Kind.DELETED
    elif report.get("captured"):
        kind = Kind.CAPTURED
    else:
        kind = Kind.SKIPPED
    return make_event(
        kind,
        node,
        str(report.get("namespace", "")),
        str(report.get("name", "")),
        reason=str(report.get("reason", "")),
        container_id=str(report.get("containerId", "")),
        netns=str(report.get("netns", "")),
    )


def make_event(
    kind: int,
    node: str,
    namespace: str,
    pod: str,
    *,
    reason: str = "",
    container_id: str = "",
    netns: str = "",
) -> cni_pb2.CNIEvent:
    """A timestamped event."""
    now = Timestamp()
    now.GetCurrentTime()
    return cni_pb2.CNIEvent(
        kind=kind,  # type: ignore[arg-type]
        node=node,
        namespace=namespace,
        pod=pod,
        reason=reason,
        container_id=container_id,
        netns=netns,
        time=now,
    )


class EventLog:
    """Latest event per pod, mirrored to the bus when one is configured."""

    def __init__(self, bus: Bus | None) -> None:
        self.latest: dict[tuple[str, str], cni_pb2.CNIEvent] = {}
        self._kv = TypedKV(bus, CNI_BUCKET, cni_pb2.CNIEvent) if bus is not None else None

    async def attach(self, bus: Bus) -> None:
        """Publish from now on to ``bus``, starting with the events kept so far."""
        self._kv = TypedKV(bus, CNI_BUCKET, cni_pb2.CNIEvent)
        for event in list(self.latest.values()):
            await self._publish(event)

    def detach(self) -> None:
        self._kv = None

    async def record(self, event: cni_pb2.CNIEvent) -> None:
        """Remember the event and publish it."""
        self.latest[(event.namespace, event.pod)] = event
        log.info(
            "pod %s/%s: %s %s",
            event.namespace,
            event.pod,
            cni_pb2.CNIEvent.Kind.Name(event.kind),
            event.reason,
        )
        await self._publish(event)

    async def _publish(self, event: cni_pb2.CNIEvent) -> None:
        if self._kv is None or not event.namespace or not event.pod:
            return
        try:
            await self._kv.put(make_key(event.node or "local", event.namespace, event.pod), event)
        except BusError as exc:
            log.warning("could not publish CNI event for %s/%s: %s", event.namespace, event.pod, exc)
