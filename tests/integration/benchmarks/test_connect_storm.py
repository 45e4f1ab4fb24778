"""A connect storm against a real Pilot process, through the xDS benchmark's own load generator.

Many Delta ADS streams open at once (as after a Pilot restart): every one is served, none is
reset by gRPC (no CANCELLED or INTERNAL), and the only streams Pilot turns away are those over
its connect rate limit, each counted in ``pilot_xds_stream_resets_total`` and logged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.xds.harness import TYPES, Events, loadgen, ok, seed, start_pilot, stop_all, wait_for  # noqa: E402
from benchmarks.xds.tls import TlsFiles, write_tls_files  # noqa: E402
from meshplane.pilot.settings import Settings  # noqa: E402
from meshplane.pilot.xds.ads import server_options  # noqa: E402
from meshplane.shared.natsserver import NatsServer, free_port  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Storm:
    nats: NatsServer
    tmp: Path
    procs: list[subprocess.Popen[Any]]
    logs: list[TextIO]

    def pilot(self, connect_rate: int, tls: TlsFiles | None = None) -> tuple[str, str]:
        """Start Pilot (mutual TLS with ``tls``); return its ADS address and metrics URL once ready."""
        grpc_port, http_port = free_port(), free_port()
        log = (self.tmp / "pilot.log").open("w")
        self.logs.append(log)
        cpu = sorted(os.sched_getaffinity(0))[0]
        self.procs.append(start_pilot(self.nats.url, grpc_port, http_port, cpu, log, connect_rate, tls=tls))
        http = f"http://127.0.0.1:{http_port}"
        assert wait_for(lambda: ok(f"{http}/ready"), 60), self.log()[-2000:]
        return f"127.0.0.1:{grpc_port}", f"{http}/metrics"

    def connect(self, pilot: str, streams: int, tls: TlsFiles | None = None) -> Events:
        """``streams`` Delta streams from two load generators; wait until every one is served."""
        events = Events()
        cpus = set(os.sched_getaffinity(0))
        half = streams // 2
        for first in (0, half):
            gen = loadgen(pilot, half, first, cpus, delta=True, tls=tls)
            self.procs.append(gen)
            events.follow(gen)
        served = wait_for(lambda: events.served_after(0.0, 2 * half), 90)
        assert served, f"streams served per type: { {t: events.count_after(t, 0) for t in TYPES} }"
        return events

    def log(self) -> str:
        return (self.tmp / "pilot.log").read_text()


@pytest.fixture
def storm(tmp_path: Path) -> Iterator[Storm]:
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    procs: list[subprocess.Popen[Any]] = []
    try:
        seed(nats.url, services=5)
        yield (storm := Storm(nats, tmp_path, procs, []))
    finally:
        stop_all(procs)
        nats.stop()
        for log in storm.logs:
            log.close()


def _resets_metric(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=5).text
    found = re.findall(r'^pilot_xds_stream_resets_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def test_1600_streams_at_once_are_all_served_without_a_reset(storm: Storm) -> None:
    # more new calls at once than gRPC core's default backlog (1000) lets wait for the server
    pilot, metrics = storm.pilot(connect_rate=100_000)
    events = storm.connect(pilot, 1600)
    assert events.resets_by_code() == {}
    assert _resets_metric(metrics) == {}


def test_streams_over_the_connect_rate_are_refused_counted_and_logged_then_served(storm: Storm) -> None:
    pilot, metrics = storm.pilot(connect_rate=50)
    events = storm.connect(pilot, 300)
    resets = events.resets_by_code()
    # what the proxies saw is exactly what Pilot counted: the rate limit's status, nothing else
    assert set(resets) == {"RESOURCE_EXHAUSTED"}, resets
    assert _resets_metric(metrics) == {"rate_limited": resets["RESOURCE_EXHAUSTED"]}
    assert "on purpose (rate_limited)" in storm.log()


def test_the_benchmark_runs_over_mutual_tls(storm: Storm) -> None:
    """``benchmarks.xds.run --tls``: the load generators' streams are served over mutual TLS."""
    tls = write_tls_files(storm.tmp / "tls")
    pilot, metrics = storm.pilot(connect_rate=100_000, tls=tls)
    events = storm.connect(pilot, 40, tls)
    assert events.resets_by_code() == {}
    assert "ADS (mutual TLS)" in storm.log()


def test_grpc_core_queues_as_many_new_streams_as_pilot_serves() -> None:
    # gRPC core's own default (1000 waiting calls, then random refusals up to 3000) would cancel
    # streams of a storm before Pilot's rate limit, counted nowhere, sees them
    options = dict(server_options(Settings()))
    assert options["grpc.server.max_pending_requests"] == options["grpc.max_concurrent_streams"]
    assert options["grpc.server.max_pending_requests_hard_limit"] == options["grpc.max_concurrent_streams"]
