"""Announce a running component on the bus so `meshctl version` can list every live instance.

The announcer writes this process's :class:`ComponentInfo` when the component is ready and then
rewrites it every :data:`REFRESH_SECONDS` (``updated`` is the time of that write) from a task it
owns. A component that dies without withdrawing its record (SIGKILL, OOM, node loss) stops
refreshing: readers such as ``meshctl version`` hide records older than
:data:`STALE_AFTER_SECONDS` (:func:`is_live`), and every live announcer deletes the records of
its own component that nobody refreshed for :data:`GC_AFTER_SECONDS` (checked every
``GC_AFTER_SECONDS / 2``; its bus identity may write no other component's records). A clean stop
withdraws the record at once. The three limits can be changed with the environment variables
``MESHPLANE_COMPONENT_REFRESH_SECONDS``, ``MESHPLANE_COMPONENT_STALE_SECONDS`` and
``MESHPLANE_COMPONENT_GC_SECONDS`` (keep refresh well below stale, stale below gc).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus, BusError, make_key
from meshplane.shared.freshness import age_seconds, sweep_unrefreshed
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.version import __version__

log = logging.getLogger(__name__)

VERSION = __version__


def seconds_from_env(name: str, default: float) -> float:
    """A positive number of seconds from environment variable ``name``, else ``default`` (warned)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value > 0:
        return value
    log.warning("%s=%r is not a positive number of seconds; using %g", name, raw, default)
    return default


REFRESH_SECONDS = seconds_from_env("MESHPLANE_COMPONENT_REFRESH_SECONDS", 10.0)
STALE_AFTER_SECONDS = seconds_from_env("MESHPLANE_COMPONENT_STALE_SECONDS", 30.0)
GC_AFTER_SECONDS = seconds_from_env("MESHPLANE_COMPONENT_GC_SECONDS", 60.0)


def instance_id() -> str:
    """This process's instance name: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def is_live(info: status_pb2.ComponentInfo, now: float | None = None) -> bool:
    """True while the component that wrote ``info`` is still refreshing it."""
    return age_seconds(info, now) <= STALE_AFTER_SECONDS


class ComponentAnnouncer:
    """Puts this component's :class:`ComponentInfo` on the bus, keeps it fresh, removes it on close."""

    def __init__(
        self,
        bus: Bus,
        component: str,
        endpoints: Mapping[str, str],
        instance: str = "",
        refresh: float = REFRESH_SECONDS,
        gc_after: float = GC_AFTER_SECONDS,
        supervisor: TaskSupervisor | None = None,
    ) -> None:
        self._kv = Buckets(bus).components
        self._refresh = refresh
        self._gc_after = gc_after
        #: The refresher runs under the service's supervisor (its failures counted in its metric).
        self._supervisor = supervisor or TaskSupervisor(f"{component} announcer")
        self._task: asyncio.Task[None] | None = None
        self._task_name = f"announce-{component}"
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
        """Write the record now and keep refreshing it until :meth:`withdraw`."""
        await self._put()
        if self._task is None:
            self._task = self._supervisor.spawn(self._task_name, self._keep_fresh)

    async def _put(self) -> None:
        self.info.updated.GetCurrentTime()
        try:
            await self._kv.put(self.key, self.info)
        except BusError as exc:
            log.warning("could not announce %s on the bus: %s", self.key, exc)

    async def _keep_fresh(self) -> None:
        """Refresh the record; a failure is logged, counted and the loop restarted by the supervisor
        (the refresher must outlive any one failure, or a live component would vanish)."""
        next_sweep = time.monotonic() + self._gc_after / 2
        while True:
            await asyncio.sleep(self._refresh)
            await self._put()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._gc_after / 2
                await sweep_unrefreshed(
                    self._kv,
                    self._gc_after,
                    what="component records",
                    prefix=make_key(self.info.component) + ".",
                )

    async def withdraw(self) -> None:
        """Stop refreshing and delete the record (best effort, 3 s at most)."""
        if self._task is not None:
            task = self._supervisor.discard(self._task_name)
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._task = None
        with contextlib.suppress(BusError, asyncio.TimeoutError):
            await asyncio.wait_for(self._kv.delete(self.key), 3)
