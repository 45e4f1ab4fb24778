"""Pilot's HTTP handlers run on the event loop thread, never on a worker thread racing the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import ValuesView
from typing import Any

import httpx
from starlette.routing import Route

from meshplane.pilot.debug.http import build_app
from meshplane.pilot.debug.listeners import Listener, bind_all, monitoring_app
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.shared.natsserver import free_port
from meshplane.shared.testing.polling import eventually

PATHS = {
    "/ready": 503,
    "/debug/syncz": 200,
    "/debug/config_dump?proxyID=web-1.shop": 404,
    "/debug/configz": 200,
    "/debug/registryz": 200,
    "/debug/push_status": 200,
    "/debug/adsz": 200,
    "/debug/edsz": 400,
    "/debug/instancesz": 200,
    "/debug/authorizationz": 200,
}


class _Recorder:
    def __init__(self) -> None:
        self.path = ""
        self.threads: dict[str, set[int]] = {}

    def saw(self) -> None:
        self.threads.setdefault(self.path, set()).add(threading.get_ident())


class _RecordingConfigs(dict[str, Any]):
    def __init__(self, rec: _Recorder) -> None:
        super().__init__()
        self.rec = rec

    def values(self) -> ValuesView[Any]:
        self.rec.saw()
        return super().values()


async def test_handlers_read_pilot_state_on_the_loop_thread() -> None:
    rec = _Recorder()
    state = State()
    state.configs = _RecordingConfigs(rec)

    def server() -> DiscoveryServer | None:
        rec.saw()
        return None

    def not_ready() -> str | None:
        rec.saw()
        return "replaying the bus"

    app = build_app(Metrics(), state, server, not_ready)
    loop_thread = threading.get_ident()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pilot") as client:
        for path, status in PATHS.items():
            rec.path = path
            resp = await client.get(path)
            assert resp.status_code == status, (path, resp.text)
    assert set(rec.threads) == set(PATHS)  # every handler read state
    assert {p: t for p, t in rec.threads.items() if t != {loop_thread}} == {}


async def test_ready_names_the_reason() -> None:
    reasons: list[str | None] = ["the push loop is down (restarting)", None]
    app = build_app(Metrics(), State(), lambda: None, lambda: reasons[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pilot") as client:
        down = await client.get("/ready")
        reasons.pop(0)
        up = await client.get("/ready")
    assert (down.status_code, down.text) == (503, "not ready: the push loop is down (restarting)\n")
    assert (up.status_code, up.text) == (200, "ready\n")


async def test_the_monitoring_port_serves_no_debug_endpoint_but_syncz() -> None:
    """Every /debug route, including any added later, is on the local-only listener only."""
    app = build_app(Metrics(), State(), lambda: None, lambda: None)
    debug_paths = [r.path for r in app.routes if isinstance(r, Route) and r.path.startswith("/debug/")]
    assert "/debug/config_dump" in debug_paths and "/debug/syncz" in debug_paths
    transport = httpx.ASGITransport(app=monitoring_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
        assert (await client.get("/ready")).status_code == 200
        assert "pilot_xds_pushes" in (await client.get("/metrics")).text
        assert (await client.get("/debug/syncz")).json() == []
        others = [path for path in debug_paths if path != "/debug/syncz"]
        served = {path: (await client.get(path)).status_code for path in others}
    assert served == dict.fromkeys(served, 404)


async def test_one_address_for_both_serves_everything_on_one_listener() -> None:
    app = build_app(Metrics(), State(), lambda: None, lambda: None)
    port = free_port()
    (both,) = bind_all(app, ("127.0.0.1", port), ("127.0.0.1", port))
    split = bind_all(app, ("127.0.0.1", 0), ("127.0.0.1", 0))
    listeners = [both, *split]
    tasks = [asyncio.create_task(listener.serve()) for listener in listeners]
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def status(listener: Listener, path: str) -> int:
                await eventually(lambda: _answers(client, listener), "listening", 10)
                return (await client.get(f"http://127.0.0.1:{listener.port}{path}")).status_code

            assert await status(both, "/debug/configz") == 200
            assert await status(split[0], "/debug/configz") == 404  # monitoring
            assert await status(split[1], "/debug/configz") == 200  # debug
    finally:
        for listener in listeners:
            listener.stop()
        await asyncio.gather(*tasks)


async def _answers(client: httpx.AsyncClient, listener: Listener) -> bool:
    try:
        return (await client.get(f"http://127.0.0.1:{listener.port}/ready")).status_code == 200
    except httpx.TransportError:
        return False
