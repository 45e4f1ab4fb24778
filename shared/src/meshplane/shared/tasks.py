"""Long-lived asyncio tasks under supervision: named, never failing in silence.

Every service runs its background loops (bus watchers, push loops, refreshers, servers) through a
:class:`TaskSupervisor`. A loop that raises is logged with its traceback and counted in the
service's ``<prefix>_task_failures`` metric, labelled by task name, and then either

- restarted after a backoff (``restart=True``, the default): 0.5 s doubling to 30 s, back to the
  start once a run has lasted 60 s; or
- treated as fatal (``restart=False``): the supervisor records the error and calls ``on_fatal``
  (usually the service's stop event), and :meth:`TaskSupervisor.raise_if_failed` then makes the
  process exit non-zero so *its* supervisor (Kubernetes, ``meshctl up``) restarts it.

A task that returns on its own is logged and not restarted: a long-lived loop should not end.
:meth:`TaskSupervisor.running` tells readiness whether a task is currently up (not in backoff).
The clock and the sleep are injectable so tests drive the backoff without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("meshplane.tasks")

TaskFactory = Callable[[], Awaitable[None]]


class TaskFailure(RuntimeError):
    """A task that must not fail did; the process should exit non-zero."""


@dataclass
class Backoff:
    """Delays between restarts: ``initial`` doubling to ``maximum``, reset after ``reset_after`` up."""

    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 60.0

    def next(self, previous: float | None, ran_for: float) -> float:
        if previous is None or ran_for >= self.reset_after:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass
class _Supervised:
    name: str
    factory: TaskFactory
    restart: bool
    task: asyncio.Task[None] | None = None
    up: bool = False
    failures: int = 0


@dataclass
class TaskSupervisor:
    """Runs named tasks; see the module docstring for what happens when one fails."""

    service: str
    failures_metric: Counter | None = None
    on_fatal: Callable[[], None] | None = None
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: The service's stop event: a task that returns once it is set ended with the service (no warning).
    stop: asyncio.Event | None = None
    _tasks: dict[str, _Supervised] = field(default_factory=dict)
    fatal: BaseException | None = None
    #: set by :meth:`begin_close`: tasks that return now are ending on purpose (no warning)
    closing: bool = False

    @staticmethod
    def metric(prefix: str, registry: CollectorRegistry | None) -> Counter:
        """The failure counter ``<prefix>_task_failures`` (label ``task``) in ``registry``."""
        return Counter(
            f"{prefix}_task_failures",
            "Background tasks that raised, by task name (each is logged with its traceback).",
            ["task"],
            registry=registry,
        )

    def spawn(self, name: str, factory: TaskFactory, *, restart: bool = True) -> asyncio.Task[None]:
        """Start ``factory()`` as task ``name``; a later failure is handled as configured."""
        if self.failures_metric is not None:  # exported at 0, so the first failure shows as an increase
            self.failures_metric.labels(task=name)
        old = self._tasks.get(name)
        if old is not None and old.task is not None and not old.task.done():
            raise ValueError(f"task {name!r} is already running")
        entry = _Supervised(name, factory, restart, up=True)  # running from now on, not from its first step
        self._tasks[name] = entry
        entry.task = asyncio.create_task(self._keep(entry), name=f"{self.service}:{name}")
        return entry.task

    def running(self, name: str) -> bool:
        """Whether task ``name`` exists and is currently running (not failed, not in backoff)."""
        entry = self._tasks.get(name)
        return entry is not None and entry.up

    def down(self) -> list[str]:
        """Names of the tasks that are not running (failed, in backoff, or ended), sorted."""
        return sorted(name for name, entry in self._tasks.items() if not entry.up)

    def failures(self, name: str) -> int:
        entry = self._tasks.get(name)
        return 0 if entry is None else entry.failures

    def discard(self, name: str) -> asyncio.Task[None] | None:
        """Cancel task ``name`` and forget it (for per-item tasks that come and go); returns its task."""
        entry = self._tasks.pop(name, None)
        if entry is None or entry.task is None:
            return None
        entry.up = False
        entry.task.cancel()
        return entry.task

    def raise_if_failed(self) -> None:
        """Raise :class:`TaskFailure` when a fatal task failed (call after the stop event)."""
        if self.fatal is not None:
            what = f"{self.service}: a task that must not fail did: {self.fatal!r}"
            raise TaskFailure(what) from self.fatal

    def begin_close(self) -> None:
        """The service is stopping: a task that returns from now on (e.g. a server told to exit)
        is not reported as a loop that ended on its own."""
        self.closing = True

    async def aclose(self, timeout: float = 3.0) -> None:
        """Cancel every task and wait for them, at most ``timeout`` seconds."""
        self.begin_close()
        tasks = [e.task for e in self._tasks.values() if e.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.warning("%s: task %s did not stop within %.0fs", self.service, t.get_name(), timeout)
        for entry in self._tasks.values():
            entry.up = False

    async def _keep(self, entry: _Supervised) -> None:
        delay: float | None = None
        while True:
            started = self.clock()
            entry.up = True
            try:
                await entry.factory()
            except asyncio.CancelledError:
                entry.up = False
                raise
            except Exception as exc:
                entry.up = False
                entry.failures += 1
                if self.failures_metric is not None:
                    self.failures_metric.labels(task=entry.name).inc()
                if not entry.restart:
                    log.exception("%s: task %s failed; the service stops", self.service, entry.name)
                    self.fatal = exc
                    if self.on_fatal is not None:
                        self.on_fatal()
                    return
                delay = self.backoff.next(delay, self.clock() - started)
                log.exception(
                    "%s: task %s failed (%d so far); restarting in %.1fs",
                    self.service,
                    entry.name,
                    entry.failures,
                    delay,
                )
                await self.sleep(delay)
                continue
            entry.up = False
            if self.closing or (self.stop is not None and self.stop.is_set()):
                log.debug("%s: task %s ended with the service", self.service, entry.name)
            else:
                log.warning("%s: task %s returned; it is not restarted", self.service, entry.name)
            return
