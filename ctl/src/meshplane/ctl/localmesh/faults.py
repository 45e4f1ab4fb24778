"""Fault injection against a running ``meshctl up`` (tests and ``benchmarks/faults``).

``run_fault`` is one experiment: load through the ingress gateway, SIGKILL a component, wait for
``meshctl up`` to say it is ready again, edit the config, and return what happened. Its parts:
``LoadGen`` sends requests at a fixed rate from a few threads and records each one; ``kill``
SIGKILLs a component's current PID and ``wait_recovered`` reads ``meshctl up``'s own restart
lines for the new PID and when it was ready again. ``bus_counts`` counts the keys of every
bucket that holds durable state, and ``BusRecorder`` records every config object put on the bus
(surviving a nats-server restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from meshplane.ctl.localmesh.testing import UpRun
from meshplane.shared.bus.buckets import Buckets
from meshplane.shared.bus.client import Bus, BusOptions
from meshplane.shared.bus.kv import EventType, TypedKV

#: buckets whose keys are durable state (not liveness records of running instances)
DURABLE_BUCKETS = ("config", "services", "workloads", "trust")
ALL_TO = "  http:\n  - route:\n    - destination: {{host: reviews, subset: {v}}}\n"


@dataclass(frozen=True)
class Result:
    sent: float
    took: float
    ok: bool
    body: str


@dataclass
class LoadGen:
    """``rate`` requests/s through ``url`` from ``threads`` threads, each on its own schedule."""

    url: str
    rate: float = 50.0
    threads: int = 8
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoadGen:
        start = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(start + i / self.rate,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _run(self, first: float) -> None:
        period = self.threads / self.rate
        nxt = first
        with httpx.Client(headers=self.headers, timeout=self.timeout) as client:
            while not self._stop.is_set():
                delay = nxt - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                nxt = max(nxt + period, time.monotonic() - period)  # a slow answer skips, never bursts
                sent = time.monotonic()
                try:
                    resp = client.get(self.url)
                    body = resp.text.strip()
                    ok = resp.status_code == 200 and "[" not in body  # the apps put a failed hop in [...]
                    body = body if ok else f"{resp.status_code} {body}"
                except httpx.HTTPError as exc:
                    ok, body = False, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.results.append(Result(sent, time.monotonic() - sent, ok, body))

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)

    def window(self, since: float, until: float = float("inf")) -> list[Result]:
        with self._lock:
            return [r for r in self.results if since <= r.sent < until]

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[Result]:
        return [r for r in self.window(since, until) if not r.ok]

    def achieved_rate(self, since: float, until: float) -> float:
        return len(self.window(since, until)) / max(1e-9, until - since)


def current_pid(run: UpRun, name: str) -> int:
    """The component's PID now (after any restarts ``meshctl up`` printed)."""
    return run.current_pids()[name]


def kill(run: UpRun, name: str) -> tuple[int, int, float]:
    """SIGKILL the component's current PID; (that PID, output lines so far, monotonic kill time)."""
    pid, mark = current_pid(run, name), len(run.lines)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return pid, mark, killed_at


def wait_recovered(
    run: UpRun, name: str, mark: int, killed_at: float, timeout: float = 30.0
) -> tuple[int, float]:
    """(new PID, seconds from the kill until ``meshctl up`` saw it ready again)."""
    pattern = re.compile(rf"meshctl up: {re.escape(name)} is ready again \(pid (\d+),")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(run.lines[mark:]):
            m = pattern.match(line)
            if m:
                return int(m.group(1)), time.monotonic() - killed_at
        time.sleep(0.02)
    raise AssertionError(f"{name} not ready again {timeout}s after the kill:\n{''.join(run.lines[mark:])}")


def set_reviews(vs: Path, original: str, version: str | None) -> None:
    """Route every reviews request to ``version`` (None: back to the file as it was)."""
    if version is None:
        vs.write_text(original)
        return
    start = original.index("  http:\n")
    end = original.index("---", start)
    vs.write_text(original[:start] + ALL_TO.format(v=version) + original[end:])


def serving(url: str, version: str, headers: dict[str, str] | None = None, n: int = 5) -> bool:
    """``n`` requests in a row answered by reviews ``version``."""
    return all(f"reviews {version}" in httpx.get(url, headers=headers, timeout=5).text for _ in range(n))


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. Raises AssertionError naming ``what``."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


JASON = {"end-user": "jason"}


@dataclass
class FaultRun:
    """What one ``run_fault`` saw; times in seconds from the kill unless said otherwise."""

    component: str
    old_pid: int
    new_pid: int
    load: LoadGen
    killed: float
    #: monotonic time meshctl up saw it ready again
    recovered: float
    ready_s: float
    #: from writing the edit (right after the recovery) until it was served
    edit_s: float
    #: from the kill until that edit was served
    reconverge_s: float
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    #: wall time of the kill, to find the restarted process's own log lines
    killed_wall: float
    started: float
    ended: float
    #: every line ``meshctl up`` printed from the kill on
    output: list[str] = field(default_factory=list)

    @property
    def others_restarted(self) -> list[str]:
        """Restart lines about any other component (nothing else may be stopped)."""
        return [
            line for line in self.output if " restarted as pid " in line and f" {self.component} " not in line
        ]

    @property
    def failed_down(self) -> list[Result]:
        return self.load.failures(self.killed, self.recovered)

    @property
    def failed_after(self) -> list[Result]:
        return self.load.failures(self.recovered)

    @property
    def rate(self) -> float:
        return self.load.achieved_rate(self.started, self.ended)


def edit_reaches_traffic(run: UpRun, streak: int = 5, timeout: float = 15.0) -> float:
    """Route all reviews to v3: seconds from the write until traffic shows it; then restore the file.

    "Shows it" is the first of ``streak`` answers in a row from v3 (the last one with the jason
    header, which the original routes send to v2), timed by when that first request was sent, so
    the confirming requests add nothing to the figure.
    """
    vs = run.config / "reviews.yaml"
    original = vs.read_text()
    try:
        written = time.monotonic()
        set_reviews(vs, original, "v3")
        since, count = 0.0, 0
        with httpx.Client(timeout=5) as client:
            while time.monotonic() - written < timeout:
                sent = time.monotonic()
                headers = JASON if count == streak - 1 else {}
                try:
                    v3 = "reviews v3" in client.get(run.gateway, headers=headers).text
                except httpx.HTTPError:
                    v3 = False
                since, count = (since or sent, count + 1) if v3 else (0.0, 0)
                if count == streak:
                    break
            else:
                raise AssertionError(f"reviews v3 not served {timeout}s after the edit")
    finally:
        set_reviews(vs, original, None)
    wait_for(lambda: serving(run.gateway, "v2", JASON), 15, "the original routes back")
    return since - written


def run_fault(run: UpRun, name: str, rate: float = 50.0) -> FaultRun:
    """SIGKILL ``name`` under ``rate`` requests/s; wait for recovery and a served edit."""
    wait_for(lambda: serving(run.gateway, "v2", JASON), 30, "the mesh to serve before the fault")
    before = bus_counts(run.nats_url())
    load = LoadGen(run.gateway, rate=rate).start()
    try:
        started = time.monotonic()
        wait_for(lambda: len(load.window(started)) >= rate, 20, "a second of load")
        old, mark, killed = kill(run, name)
        killed_wall = time.time()
        new, ready_s = wait_recovered(run, name, mark, killed)
        recovered = killed + ready_s
        edit_s = edit_reaches_traffic(run)
        reconverge_s = recovered - killed + edit_s
        wait_for(lambda: len(load.window(recovered)) >= 2 * rate, 20, "load after the recovery")
        ended = time.monotonic()
    finally:
        load.stop()
    after = bus_counts(run.nats_url())
    return FaultRun(
        name, old, new, load, killed, recovered, ready_s, edit_s, reconverge_s, before, after,
        killed_wall, started, ended, list(run.lines[mark:]),
    )  # fmt: skip


@dataclass
class SidecarFaultRun:
    """What ``run_sidecar_fault`` saw: ``others`` never pass the killed sidecar, ``jason`` does."""

    old_pid: int
    new_pid: int
    ready_s: float
    #: from the kill until the first of jason's requests after which none failed
    traffic_back_s: float
    others: LoadGen
    jason: LoadGen
    killed: float
    recovered: float
    started: float
    ended: float


def run_sidecar_fault(
    run: UpRun, name: str = "envoy-reviews-v2.bookinfo", rate: float = 50.0
) -> SidecarFaultRun:
    """SIGKILL reviews-v2's sidecar (only jason's requests pass it) under load from both kinds."""
    wait_for(lambda: serving(run.gateway, "v2", JASON), 30, "the mesh to serve before the fault")
    others = LoadGen(run.gateway, rate=rate).start()
    jason = LoadGen(run.gateway, rate=10, threads=2, headers=JASON).start()
    try:
        started = time.monotonic()
        wait_for(lambda: len(others.window(started)) >= rate, 20, "a second of load")
        old, mark, killed = kill(run, name)
        new, ready_s = wait_recovered(run, name, mark, killed)
        wait_for(lambda: serving(run.gateway, "v2", JASON, 10), 30, "jason served by reviews v2 again")
        recovered = time.monotonic()
        wait_for(lambda: len(jason.window(recovered)) >= 20, 20, "jason's load after the recovery")
        ended = time.monotonic()
    finally:
        others.stop()
        jason.stop()
    # back: the first of jason's requests after his last failure (the checks above add nothing)
    last_failure = max((r.sent for r in jason.failures(killed)), default=killed)
    back = min((r.sent for r in jason.window(last_failure) if r.ok), default=recovered)
    return SidecarFaultRun(old, new, ready_s, back - killed, others, jason, killed, recovered, started, ended)


def first_log_time(log: Path, text: str, since_wall: float) -> float | None:
    """Wall time of the first JSON log line after ``since_wall`` whose message contains ``text``."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if at >= since_wall and text in str(entry.get("msg", "")):
            return at
    return None


async def _counts(nats_url: str) -> dict[str, int]:
    bus = await Bus.connect(BusOptions(url=nats_url, name="faults-count", identity="meshctl"))
    try:
        buckets = Buckets(bus)
        kvs: dict[str, TypedKV] = {name: getattr(buckets, name) for name in DURABLE_BUCKETS}  # type: ignore[type-arg]
        return {name: len(await asyncio.wait_for(kv.items(), 20)) for name, kv in kvs.items()}
    finally:
        await bus.close()


async def _trust(nats_url: str) -> dict[str, tuple[str, ...]]:
    bus = await Bus.connect(BusOptions(url=nats_url, name="faults-trust", identity="meshctl"))
    try:
        items = await asyncio.wait_for(Buckets(bus).trust.items(), 20)
        return {key: (value.version, *value.root_certs_pem) for key, value in items.items()}
    finally:
        await bus.close()


def trust_bundles(nats_url: str) -> dict[str, tuple[str, ...]]:
    """Per trust domain, the bundle's version and PEM roots, as Citadel published them."""
    return asyncio.run(_trust(nats_url))


def bus_counts(nats_url: str) -> dict[str, int]:
    """Keys per durable bucket (config objects, services, workloads, trust bundles)."""
    return asyncio.run(_counts(nats_url))


class BusRecorder:
    """Records every config object put on the bus, (key, spec_json), from a thread of its own."""

    def __init__(self, nats_url: str) -> None:
        self.url = nats_url
        self.puts: list[tuple[str, str]] = []
        self.deletes: list[str] = []
        self.latest: dict[str, str] = {}
        self.synced = threading.Event()
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> BusRecorder:
        self._thread.start()
        if not self.synced.wait(30):
            raise AssertionError(f"the bus recorder did not sync: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)

    def _main(self) -> None:
        self._task = self._loop.create_task(self._watch())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _watch(self) -> None:
        try:
            bus = await Bus.connect(BusOptions(url=self.url, name="faults-recorder", identity="meshctl"))
        except BaseException as exc:
            self.error = exc
            raise
        try:
            async with Buckets(bus).config.watch() as w:
                async for ev in w:
                    if ev.type is EventType.SYNCED:
                        self.synced.set()
                    elif ev.type is EventType.PUT and ev.value is not None:
                        self.puts.append((ev.key, ev.value.spec_json))
                        self.latest[ev.key] = ev.value.spec_json
                    elif ev.type is EventType.DELETE:
                        self.deletes.append(ev.key)
                        self.latest.pop(ev.key, None)
        finally:
            await bus.close()
