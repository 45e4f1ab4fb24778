"""The design card's Pilot settings (issue 15 item 8): ``PILOT_ENABLE_AMBIENT`` refuses to start,
``PILOT_PUSH_THROTTLE`` bounds the pushes in flight, and both push knobs default as today's Istio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.push_queue import PushQueue
from meshplane.shared.testing.polling import eventually

PILOT = Path(sys.executable).parent / "meshplane-pilot"


def test_ambient_true_stops_pilot_at_start_with_a_clear_message() -> None:
    env = {**os.environ, "PILOT_ENABLE_AMBIENT": "true"}
    done = subprocess.run(
        [str(PILOT), "--xds-plaintext"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PILOT_ENABLE_AMBIENT=true: meshplane has no ambient mode" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ValueError, match="PILOT_ENABLE_AMBIENT: expected true or false, got 'maybe'"):
        Settings.from_env({"PILOT_ENABLE_AMBIENT": "maybe"})
    assert Settings.from_env({"PILOT_ENABLE_AMBIENT": "false"})  # the default, explicitly


def test_push_knobs_default_to_istios_automatic_value() -> None:
    auto = min(15 + 5 * (os.cpu_count() or 1), 100)
    s = Settings.from_env({})
    assert (s.push_throttle, s.max_requests_per_second) == (auto, float(auto))
    # 0 means automatic, as in Istio 1.21+; any other value is taken as given
    assert Settings.from_env({"PILOT_PUSH_THROTTLE": "0"}).push_throttle == auto
    assert Settings.from_env({"PILOT_MAX_REQUESTS_PER_SECOND": "25"}).max_requests_per_second == 25.0


async def test_push_throttle_is_the_number_of_pushes_in_flight() -> None:
    settings = Settings.from_env({"PILOT_PUSH_THROTTLE": "3"})
    gate = asyncio.Event()
    in_flight: list[str] = []
    done: list[str] = []

    async def push(conn: Connection, _req: PushRequest) -> None:
        in_flight.append(conn.id)
        await gate.wait()
        in_flight.remove(conn.id)
        done.append(conn.id)

    queue = PushQueue(push, settings.push_throttle)
    queue.start()
    for i in range(10):
        conn = Connection(
            parse_proxy(f"sidecar~10.0.0.{i}~p{i}.ns~ns.svc.cluster.local", None), "peer", delta=False
        )
        conn.initialized.set()
        queue.enqueue(conn, PushRequest(full=True))

    async def three_in_flight() -> bool:
        return len(in_flight) == 3

    await eventually(three_in_flight, "three pushes in flight", 5)
    for _ in range(20):  # every worker is blocked: no fourth push can start however long we let it run
        await asyncio.sleep(0)
    assert len(in_flight) == 3 and queue.pending() == 10
    gate.set()

    async def all_done() -> bool:
        return len(done) == 10

    await eventually(all_done, "every push done", 5)
    await queue.stop()
