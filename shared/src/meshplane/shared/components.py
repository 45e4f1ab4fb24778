"""Announce a running component on the bus so `meshctl version` can list every instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus, BusError, make_key

log = logging.getLogger(__name__)

VERSION = "0.1.0"


def instance_id() -> str:
    """This process's instance name: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ComponentAnnouncer:
    """Puts this component's :class:`ComponentInfo` on the bus and removes it on close."""

    def __init__(self, bus: Bus, component: str, endpoints: Mapping[str, str], instance: str = "") -> None:
        self._kv = Buckets(bus).components
        self.instance = instance or instance_id()
        self.key = make_key(component, self.instance)
        started = Timestamp()
        started.GetCurrentTime()
        self.info = status_pb2.ComponentInfo(
            component=component,
            instance=self.instance,
            version=VERSION,
            started=started,
            endpoints=dict(endpoints),
        )

    async def announce(self) -> None:
        try:
            await self._kv.put(self.key, self.info)
        except BusError as exc:
            log.warning("could not announce %s on the bus: %s", self.key, exc)

    async def withdraw(self) -> None:
        with contextlib.suppress(BusError, asyncio.TimeoutError):
            await asyncio.wait_for(self._kv.delete(self.key), 3)
