"""Pilot never stops pushing in silence: supervised tasks, failing pushes, readiness, exit codes.

An in-process Pilot on a real nats-server; faults are injected by replacing one function.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from meshplane.pilot.app import Pilot
from meshplane.pilot.ingest.watcher import Watcher
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.settings import Settings
from meshplane.pilot.status import StatusPublisher
from meshplane.pilot.xds.connection import Connection
from meshplane.proto.bus.v1 import config_pb2, registry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import config_key, service_key
from meshplane.shared.lifecycle import run_service
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.tasks import Backoff
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

HOST = "a.default.svc.cluster.local"


def settings(nats_url: str) -> Settings:
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debug_port=0,
        nats_url=nats_url,
        pilot_id="unit",
        debounce_after=0.02,
    )


def rule(kind: str, name: str) -> tuple[str, config_pb2.ConfigResource]:
    spec = {"host": HOST} if kind == "DestinationRule" else {"hosts": [HOST]}
    key = config_key("networking.istio.io", kind, "default", name)
    res = config_pb2.ConfigResource(
        kind=kind,
        group="networking.istio.io",
        version="v1",
        namespace="default",
        name=name,
        spec_json=json.dumps(spec),
    )
    return key, res


class Running:
    def __init__(self, pilot: Pilot, buckets: Buckets) -> None:
        self.pilot = pilot
        self.buckets = buckets
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{pilot.http_port}", timeout=5)
        self.debug = httpx.AsyncClient(base_url=f"http://127.0.0.1:{pilot.debug_port}", timeout=5)

    async def ready(self) -> tuple[int, str]:
        resp = await self.http.get("/ready")
        return resp.status_code, resp.text

    async def metric(self, name: str, labels: str = "") -> float:
        text = (await self.http.get("/metrics")).text
        pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    async def put(self, kind: str, name: str) -> None:
        await self.buckets.config.put(*rule(kind, name))


@pytest.fixture
async def running(bus: Bus) -> AsyncIterator[Running]:
    buckets = Buckets(bus)
    port = registry_pb2.ServicePort(name="http", number=80, protocol=registry_pb2.HTTP)
    await buckets.services.put(
        service_key("default", HOST), registry_pb2.Service(hostname=HOST, namespace="default", ports=[port])
    )
    pilot = Pilot(settings(bus.opts.url))
    pilot.tasks.backoff = Backoff(initial=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(pilot.run(stop))
    await eventually(condition(lambda: pilot.http_port != 0 or task.done()), "Pilot's HTTP port", 10)
    r = Running(pilot, buckets)
    try:
        await eventually(lambda: _ok(r), "Pilot ready", 20)
        yield r
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await r.http.aclose()
        await r.debug.aclose()


async def _ok(r: Running) -> bool:
    try:
        return (await r.ready())[0] == 200
    except httpx.HTTPError:
        return False


def condition(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def test_a_push_that_raises_is_logged_counted_and_later_changes_are_pushed(
    running: Running, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = running.pilot
    assert p.server is not None
    real_push = p.server.push
    pushed: list[PushRequest] = []
    broken = True

    async def push(req: PushRequest) -> None:
        if broken:
            raise RuntimeError("injected push failure")
        await real_push(req)
        pushed.append(req)

    monkeypatch.setattr(p.server, "push", push)
    caplog.set_level(logging.ERROR, "meshplane.pilot.debounce")
    await running.put("DestinationRule", "a")

    async def counted() -> bool:
        return await running.metric("pilot_xds_push_context_errors") >= 1

    await eventually(counted, "the failed push counted", 10)
    failures = [r for r in caplog.records if "push failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None  # logged with its traceback
    status, body = await running.ready()
    assert status == 503 and "the last push failed" in body and "injected push failure" in body

    broken = False
    await running.put("VirtualService", "a")
    await eventually(
        condition(lambda: {"DestinationRule", "VirtualService"} <= set().union(*(r.kinds for r in pushed))),
        "both changes pushed (the failed one merged or retried)",
        10,
    )
    await eventually(lambda: _ok(running), "/ready 200 after a good push", 10)
    last = (await running.debug.get("/debug/push_status")).json()
    assert last["pushes"] >= 1 and last["version"]


async def test_a_push_loop_that_dies_is_restarted_and_not_ready_meanwhile(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = running.pilot
    d = p.debouncer
    assert d is not None and p.server is not None
    held = asyncio.Event()
    release = asyncio.Event()

    async def backoff_sleep(seconds: float) -> None:  # the restart waits until the test says so
        held.set()
        await release.wait()

    p.tasks.sleep = backoff_sleep
    real_timeout = d._timeout
    calls = 0

    def broken_timeout() -> float | None:  # a bug in the loop itself, once
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected push loop bug")
        return real_timeout()

    monkeypatch.setattr(d, "_timeout", broken_timeout)
    pushes = p.server.push_count
    await running.put("DestinationRule", "a")
    await eventually(condition(held.is_set), "the push loop failed and waits to restart", 10)
    status, body = await running.ready()
    assert (status, body) == (503, "not ready: the push loop is down (restarting)\n")
    assert await running.metric("pilot_task_failures_total", '{task="debouncer"}') == 1.0
    release.set()
    await eventually(condition(lambda: p.server is not None and p.server.push_count > pushes), "a push", 10)
    await eventually(lambda: _ok(running), "/ready 200 after the restart", 10)
    assert p.tasks.failures("debouncer") == 1


async def test_a_failing_status_publisher_is_restarted_and_counted(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = StatusPublisher._put_all
    rounds: list[str] = []

    async def put_all(self: StatusPublisher, conns: list[Connection]) -> None:
        if not rounds:
            rounds.append("failed")
            raise RuntimeError("injected status failure")
        rounds.append("ok")
        await real(self, conns)

    monkeypatch.setattr(StatusPublisher, "_put_all", put_all)
    await eventually(condition(lambda: "ok" in rounds), "a status round after the failure", 10)
    assert rounds[0] == "failed"
    assert await running.metric("pilot_task_failures_total", '{task="status"}') == 1.0
    assert running.pilot.tasks.running("status")
    assert any("task status failed" in r.getMessage() and r.exc_info is not None for r in caplog.records)
    assert (await running.ready())[0] == 200  # the push loop is fine: still ready


def test_a_failed_bus_watcher_stops_pilot_with_a_non_zero_exit(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Watcher, key: str, value: object) -> PushRequest:
        raise RuntimeError("injected watcher bug")

    monkeypatch.setattr(Watcher, "_on_config", broken)
    pilot = Pilot(settings(nats_server.url))

    async def main(stop: asyncio.Event) -> None:
        async def break_it() -> None:
            await eventually(condition(lambda: pilot.ready), "Pilot ready", 20)
            bus = await Bus.connect(BusOptions(url=nats_server.url))
            try:
                await Buckets(bus).config.put(*rule("DestinationRule", "a"))
            finally:
                await bus.close()

        helper = asyncio.create_task(break_it())
        try:
            await asyncio.wait_for(pilot.run(stop), 30)
        finally:
            await helper

    assert run_service("meshplane-pilot", main) == 1
    assert pilot.tasks.failures("watcher") == 1


@pytest.mark.parametrize("flag", ["--http-addr", "--debug-addr", "--grpc-addr"])
def test_a_taken_port_is_one_clear_line_and_exit_code_1(flag: str, nats_server: NatsServer) -> None:
    what = "gRPC" if flag == "--grpc-addr" else "HTTP"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = {"--http-addr": "127.0.0.1:0", "--debug-addr": "127.0.0.1:0", "--grpc-addr": "127.0.0.1:0"}
        others[flag] = f"127.0.0.1:{port}"
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "meshplane-pilot"),
                "--nats-url",
                nats_server.url,
                "--xds-plaintext",
                *(part for item in others.items() for part in item),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1, out
    assert f"cannot listen on 127.0.0.1:{port} for {what} ({flag})" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
