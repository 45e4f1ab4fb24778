"""VM auto-registration and health checks (Istio's ``autoregistration.Controller``).

Where the entries live: Pilot reads config only from the bus and only Galley writes config, so
Pilot does not ask Galley to register anything. It writes the entries it makes to a bucket of
its own (``mesh-workload-entries``, writable by the ``pilot`` identity only), which every
replica watches: any replica serves their endpoints, and the one a proxy is connected to records
itself as the entry's ``istio.io/workloadController``. In Kubernetes this is the same bucket:
meshplane does not write WorkloadEntries to the API server as istiod does, so ``kubectl get
workloadentries`` does not list them (they are on the bus, which the ``meshctl`` identity reads).

* Connect with ``AUTO_REGISTER_GROUP``: the entry is made from the WorkloadGroup (or, if it
  exists, marked connected to this replica). A missing group fails the proxy's stream (Istio's
  FailedPrecondition), and the proxy retries. Over mutual TLS the proxy's service account (its
  certificate's) must be the entry's (Istio's ``ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY``).
* Last connection to this replica closed: the entry is marked disconnected and, unless the
  proxy reconnects (to any replica) within ``PILOT_WORKLOAD_ENTRY_GRACE_PERIOD``, deleted.
* Every ``10 x grace period`` a sweep deletes what a dead replica left behind: entries
  disconnected for longer than the grace period, "connected" ones not refreshed for 1.5 x the
  maximum connection age (a live proxy reconnects by then), and entries whose group is gone
  (Istio's owner reference; each replica deletes only its own or disconnected ones, as another
  may not have seen the group yet).
* Health reports (``istio.v1.HealthInformation`` requests on an ADS stream, sent by the proxy's
  side, see ``meshctl workload-probe``) set the entry's ``Healthy`` condition.

Writes are serialised by one lock and decided on the newest state this replica has seen: the
bus watch's, or its own last write of that entry if that is newer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from meshplane.pilot.model import workload_entry as we
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import Proxy
from meshplane.proto.bus.v1 import workload_entry_pb2
from meshplane.shared.bus import TypedKV
from meshplane.shared.bus.buckets import workload_key
from meshplane.shared.config import models

log = logging.getLogger("meshplane.pilot.autoregister")

#: The type URL of health reports on an ADS stream (Istio's ``HealthInformation``).
HEALTH_TYPE = "type.googleapis.com/istio.v1.HealthInformation"

_METRICS = {
    "success": "Total number of successful auto registrations.",
    "updates": "Total number of auto registration updates.",
    "unregister": "Total number of unregistrations.",
    "deletes": "Total number of auto registration cleaned up by periodic timer.",
    "errors": "Total number of auto registration errors.",
}

GroupLookup = Callable[[str, str], "Config[models.WorkloadGroup] | None"]


class RegistrationError(Exception):
    """The proxy cannot be registered; its stream is failed with this message."""


class AutoRegistration:
    def __init__(
        self,
        kv: TypedKV[workload_entry_pb2.RegisteredWorkloadEntry],
        entries: Mapping[str, we.Entry],
        group: GroupLookup,
        pilot_id: str,
        *,
        registration: bool = True,
        health_checks: bool = True,
        validate_identity: bool = False,
        grace_period: float = 10.0,
        max_connection_age: float = 1800.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.kv = kv
        #: the bus's view of the bucket (kept current by Pilot's watcher)
        self.entries = entries
        self.group = group
        self.pilot_id = pilot_id
        self.registration = registration
        self.health_checks = health_checks
        #: ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY, when ADS is mutual TLS (the proxy's namespace
        #: and service account are then its certificate's): the entry's account must be the proxy's
        self.validate_identity = validate_identity
        self.grace_period = grace_period
        self.max_connection_age = max_connection_age
        self.clock = clock
        self.sleep = sleep
        self._lock = asyncio.Lock()
        self._mine: dict[str, we.Entry] = {}
        self._connections: dict[str, int] = {}
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._detached_tasks: set[asyncio.Task[None]] = set()
        self._health: dict[str, tuple[bool, str]] = {}
        #: Istio's metrics: auto_registration_{success,updates,unregister,deletes,errors}_total
        self.counts = {
            event: Counter(f"auto_registration_{event}", help_text, registry=registry)
            for event, help_text in _METRICS.items()
        }

    # ---- keys ------------------------------------------------------------------------
    @staticmethod
    def name_of(proxy: Proxy) -> str:
        """The name of the entry auto-registered for ``proxy`` ("" when it asks for none)."""
        if not proxy.auto_register_group:
            return ""
        return we.entry_name(proxy.auto_register_group, we.proxy_address(proxy), proxy.network)

    def key_of(self, proxy: Proxy) -> str | None:
        """The bucket key of that entry (None when the proxy asks for none)."""
        name = self.name_of(proxy)
        return workload_key(proxy.namespace, name) if name else None

    def _current(self, key: str) -> we.Entry | None:
        seen, mine = self.entries.get(key), self._mine.get(key)
        if mine is None or (seen is not None and we.last_change(seen) > we.last_change(mine)):
            return seen
        return mine

    async def _put(self, key: str, entry: we.Entry) -> None:
        await self.kv.put(key, entry)
        self._mine[key] = entry

    async def _delete(self, key: str, why: str) -> None:
        await self.kv.delete(key)
        self._mine.pop(key, None)
        self._health.pop(key, None)
        self.counts["deletes"].inc()
        log.info("WorkloadEntry %s deleted: %s", key, why)

    # ---- connections -----------------------------------------------------------------
    async def connect(self, proxy: Proxy) -> None:
        """Register (or mark connected) the entry of a proxy that asks for one; raises
        :class:`RegistrationError` when it cannot be (the proxy's stream then fails)."""
        key = self.key_of(proxy)
        if key is None or not self.registration:
            return
        if not we.proxy_address(proxy):
            log.error("proxy %s: no IP, not auto-registered", proxy.id)
            return
        async with self._lock:
            now = self.clock()
            current = self._current(key)
            if current is None:
                group = self.group(proxy.namespace, proxy.auto_register_group)
                if group is None:
                    self.counts["errors"].inc()
                    raise RegistrationError(
                        f"auto-registration of {proxy.id}: cannot find WorkloadGroup "
                        f"{proxy.namespace}/{proxy.auto_register_group}"
                    )
                made = we.entry_from_group(group, proxy, self.name_of(proxy))
                self._check_identity(proxy, made)
                entry = we.connected(made, self.pilot_id, now)
                event = "success"
            elif we.last_change(current) > now:
                return  # a newer connection (to another replica) already owns it
            else:
                self._check_identity(proxy, current)
                entry = we.connected(current, self.pilot_id, now)
                event = "updates"
            if key in self._health and self.health_checks:
                entry = we.with_health(entry, *self._health[key], now) or entry
            await self._put(key, entry)
            self.counts[event].inc()
            self._connections[key] = self._connections.get(key, 0) + 1
            if (task := self._cleanups.pop(key, None)) is not None:
                task.cancel()
        log.info("WorkloadEntry %s registered for %s (%s)", key, proxy.id, event)

    def _check_identity(self, proxy: Proxy, entry: we.Entry) -> None:
        account = we.service_account(entry)
        if self.validate_identity and account and proxy.service_account != account:
            self.counts["errors"].inc()
            raise RegistrationError(
                f"auto-registration of {proxy.id}: its identity {proxy.namespace}/"
                f"{proxy.service_account or '*'} is not the WorkloadEntry's service account {account!r}"
            )

    # A stream's handler awaits these tasks shielded: gRPC cancels the handler when the proxy goes
    # away, and a cancel that cut a connect or disconnect short after its write left the entry
    # marked connected, or disconnected, with no deletion ever scheduled.
    def stream_opened(self, proxy: Proxy) -> asyncio.Task[None]:
        """:meth:`connect` in a task of its own."""
        return self._detached(self.connect(proxy))

    def close_once_opened(self, opening: asyncio.Task[None], proxy: Proxy) -> None:
        """The stream ended while ``opening`` registered it: disconnect once it has (if it did)."""

        def opened(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.stream_closed(proxy)

        opening.add_done_callback(opened)

    def stream_closed(self, proxy: Proxy) -> asyncio.Task[None]:
        """:meth:`disconnect` in a task of its own."""
        return self._detached(self._disconnect_logged(proxy))

    def _detached(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._detached_tasks.add(task)
        task.add_done_callback(self._detached_tasks.discard)
        return task

    async def _disconnect_logged(self, proxy: Proxy) -> None:
        try:
            await self.disconnect(proxy)
        except Exception:
            log.exception("marking %s's WorkloadEntry disconnected failed", proxy.id)

    async def disconnect(self, proxy: Proxy) -> None:
        """The proxy's stream closed: on its last one, mark the entry disconnected and delete it
        after the grace period unless the proxy is back."""
        key = self.key_of(proxy)
        if key is None or key not in self._connections:
            return
        async with self._lock:
            self._connections[key] -= 1
            if self._connections[key] > 0:
                return
            del self._connections[key]
            current = self._current(key)
            if current is None or we.controller(current) != self.pilot_id:
                return  # another replica took it over
            await self._put(key, we.disconnected(current, self.clock()))
            self.counts["unregister"].inc()
            self._cleanups[key] = asyncio.create_task(self._cleanup_after(key))

    async def _cleanup_after(self, key: str) -> None:
        """Delete the entry once it has been disconnected for the grace period. The timer sleeps
        on the loop's clock while the entry records wall-clock time, which may run slower (NTP
        slewing) or step back: until the entry's own record says the grace period has passed,
        sleep the rest of it again, rather than leaving the entry to the next sweep."""
        delay = self.grace_period
        while True:
            await self.sleep(delay)
            async with self._lock:
                current = self._current(key)
                left = self._left(current) if current is not None and key not in self._connections else None
                if left is not None and left <= 0:
                    await self._delete(key, f"disconnected for more than {self.grace_period:g}s")
                if left is None or left <= 0:
                    self._cleanups.pop(key, None)
                    return
            delay = left

    def _left(self, entry: we.Entry) -> float | None:
        """Seconds of the grace period a disconnected entry has left (None when it is connected)."""
        gone = we.disconnected_at(entry)
        if we.connected_at(entry) is not None or gone is None:
            return None
        return self.grace_period - (self.clock() - gone)

    def _expired(self, entry: we.Entry) -> bool:
        left = self._left(entry)
        return left is not None and left <= 0

    # ---- health ----------------------------------------------------------------------
    async def report_health(self, proxy: Proxy, request: Any) -> None:
        """A HealthInformation request: no ``error_detail`` is healthy, one is unhealthy."""
        if not self.health_checks:
            return
        key = self.key_of(proxy)
        if key is None:
            if proxy.workload_entry:
                log.warning(
                    "health of WorkloadEntry %s/%s: accepted, not applied by meshplane (only "
                    "auto-registered entries carry health)",
                    proxy.namespace,
                    proxy.workload_entry,
                )
            return
        healthy = not request.HasField("error_detail")
        report = (healthy, "" if healthy else request.error_detail.message)
        async with self._lock:
            self._health[key] = report
            current = self._current(key)
            if current is None:
                return  # applied when the entry is registered
            changed = we.with_health(current, *report, self.clock())
            if changed is not None:
                await self._put(key, changed)
                log.info("WorkloadEntry %s: Healthy=%s %s", key, healthy, report[1])

    # ---- sweeping --------------------------------------------------------------------
    async def run(self) -> None:
        """Sweep every 10 x grace period (Istio's periodic cleanup)."""
        while True:
            await self.sleep(10 * self.grace_period)
            await self.sweep()

    async def sweep(self) -> int:
        """Delete entries left behind by dead replicas, and those whose WorkloadGroup was deleted
        (this replica's own or disconnected ones: another replica may not have seen the group yet)."""
        deleted = 0
        async with self._lock:
            for key in list(self.entries):
                entry = self._current(key)
                why = self._sweep_reason(key, entry) if entry is not None else ""
                if why:
                    try:
                        await self._delete(key, why)
                        deleted += 1
                    except Exception as exc:  # the next sweep tries again
                        log.warning("sweeping WorkloadEntry %s failed: %s", key, exc)
        return deleted

    def _sweep_reason(self, key: str, entry: we.Entry) -> str:
        res = entry.entry
        group = res.annotations.get(we.AUTO_REGISTRATION_GROUP, "")
        since = we.connected_at(entry)
        mine_or_idle = we.controller(entry) == self.pilot_id or since is None
        if group and mine_or_idle and self.group(res.namespace, group) is None:
            return f"WorkloadGroup {res.namespace}/{group} deleted"
        if key in self._connections:
            return ""
        if self._expired(entry):
            return "disconnected for longer than the grace period"
        if since is not None and self.clock() - since > 1.5 * self.max_connection_age:
            return "its Pilot stopped refreshing it (died)"
        return ""

    def close(self) -> None:
        for task in self._cleanups.values():
            task.cancel()
        self._cleanups.clear()
