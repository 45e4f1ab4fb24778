"""``--workers N``: N-1 extra processes serving CreateCertificate on the main process's ports.

Each worker is a fresh interpreter (``multiprocessing`` spawn) that loads the CA from
``--ca-dir`` itself (the key stays on this machine, files stay 0600), makes its own serving
key, follows CA changes by watching ``--ca-dir`` (only the main process rotates the root and
publishes the trust bundle), and counts into its row of a counter table shared with the main
process, which serves ``/metrics``. A worker dies with its parent (``PR_SET_PDEATHSIG``), so
even a SIGKILL of the main process leaves no orphan; SIGTERM stops workers before the main exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing as mp
import os
import signal
from collections.abc import MutableSequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import cast

from prometheus_client import Counter

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.rotation import watch_ca_dir
from meshplane.citadel.grpcserver import BoundPorts, renew_serving, settle_gc, start_grpc
from meshplane.citadel.metrics import CitadelMetrics, table_size
from meshplane.citadel.server.tls import ServingCredentials
from meshplane.citadel.settings import Settings
from meshplane.citadel.trustdomain import TrustDomain
from meshplane.shared.lifecycle import run_service
from meshplane.shared.processes import die_with_parent
from meshplane.shared.tasks import TaskSupervisor
from meshplane.shared.telemetry import configure_logging

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
SUPERVISE_SECONDS = 1.0


class WorkerPool:
    """The main process's view of its workers: start, watch (restart a dead one), stop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ctx = mp.get_context("spawn")
        self._procs: dict[int, BaseProcess] = {}
        self._serving: set[int] = set()  # rows whose current process said it serves
        self._ports: BoundPorts | None = None
        #: one row of counters per serving process (row 0 = the main process)
        self.counters: MutableSequence[int] = (
            cast(MutableSequence[int], self._ctx.Array("q", table_size(settings.workers), lock=False))
            if settings.workers > 1
            else [0] * table_size(1)
        )

    async def start(self, ports: BoundPorts) -> None:
        """Start every worker and wait until each serves; raise RuntimeError if one cannot."""
        self._ports = ports
        await asyncio.gather(*(self._start_one(row) for row in range(1, self._settings.workers)))

    async def _start_one(self, row: int) -> None:
        assert self._ports is not None
        settings = dataclasses.replace(
            self._settings,
            grpc_addr=(self._settings.grpc_addr[0], self._ports.grpc),
            grpc_mtls_addr=(
                (self._settings.grpc_mtls_addr[0], self._ports.mtls)
                if self._settings.grpc_mtls_addr is not None and self._ports.mtls is not None
                else None
            ),
        )
        self._serving.discard(row)
        ready_recv, ready_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main,
            args=(settings, row, self.counters, ready_send, os.getpid()),
            name=f"citadel-worker-{row}",
            daemon=True,
        )
        proc.start()
        ready_send.close()
        self._procs[row] = proc
        try:
            if not await asyncio.to_thread(_wait_ready, ready_recv, READY_TIMEOUT):
                raise RuntimeError(f"citadel worker {row} (pid {proc.pid}) did not start serving")
        finally:
            ready_recv.close()
        self._serving.add(row)
        log.info("citadel worker %d serving (pid %d)", row, proc.pid)

    def alive(self) -> bool:
        """True while every worker process runs and serves (the main process's ``/ready``)."""
        return all(row in self._serving and p.is_alive() for row, p in self._procs.items())

    async def supervise(self, stop: asyncio.Event, exits: Counter | None = None) -> None:
        """Restart a worker that died until ``stop`` is set (each death counted in ``exits``)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), SUPERVISE_SECONDS)
            except TimeoutError:
                pass
            for row, proc in list(self._procs.items()):
                if not proc.is_alive() and not stop.is_set():
                    log.error("citadel worker %d exited (%s): restarting it", row, proc.exitcode)
                    if exits is not None:
                        exits.labels(task=f"worker-{row}").inc()
                    try:
                        await self._start_one(row)
                    except RuntimeError as exc:
                        log.error("%s", exc)

    def terminate(self) -> None:
        """Ask every worker to stop (SIGTERM: they finish in-flight calls)."""
        for proc in self._procs.values():
            if proc.is_alive():
                proc.terminate()

    async def join(self) -> None:
        """Wait for workers to exit; kill any still running after ``STOP_TIMEOUT``."""
        for row, proc in self._procs.items():
            await asyncio.to_thread(proc.join, STOP_TIMEOUT)
            if proc.is_alive():
                log.warning("citadel worker %d did not stop in %ss: killing it", row, STOP_TIMEOUT)
                proc.kill()
                await asyncio.to_thread(proc.join, STOP_TIMEOUT)


def _wait_ready(conn: Connection, timeout: float) -> bool:
    try:
        return bool(conn.poll(timeout) and conn.recv())
    except EOFError:  # the worker exited before it was ready
        return False


def worker_main(
    settings: Settings, row: int, counters: MutableSequence[int], ready: Connection, parent_pid: int
) -> None:
    """A worker process's entry point (spawned by :class:`WorkerPool`)."""
    die_with_parent(signal.SIGTERM, parent_pid)()  # SIGTERM: shut down in order, as on a stop
    configure_logging()
    authority = LocalAuthority.load(
        settings.ca_dir, settings.default_ttl, settings.max_ttl, settings.sign_window
    )

    async def serve(stop: asyncio.Event) -> None:
        metrics = CitadelMetrics(counters, row=row)
        serving = ServingCredentials(authority.bundle, settings.hostnames)
        authority.on_change(serving.update)
        trust_domain = TrustDomain(settings.trust_domain, settings.trust_domain_pinned)
        server, _ = await start_grpc(
            settings, authority, metrics, serving, worker=True, trust_domain=trust_domain
        )
        settle_gc()
        ready.send(True)
        ready.close()
        # A failed loop is logged with its traceback and restarted with backoff while the worker
        # keeps serving (a removed --ca-dir must not take the workers down); the worker has no
        # metrics of its own: its death, if it comes to that, is counted by the main process.
        tasks = TaskSupervisor(f"citadel-worker-{row}", on_fatal=stop.set, stop=stop)
        try:
            tasks.spawn("ca-dir-watch", lambda: watch_ca_dir(authority, stop))
            tasks.spawn("serving-cert", lambda: renew_serving(authority, serving, stop))
            if settings.nats_url:
                tasks.spawn("trust-domain", lambda: trust_domain.follow(settings.nats_url, stop))
            await stop.wait()
        finally:
            await tasks.aclose()
            await server.stop(grace=2.0)
        tasks.raise_if_failed()

    raise SystemExit(run_service(f"meshplane-citadel-worker-{row}", serve))
