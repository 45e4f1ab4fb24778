"""Pilot's HTTP handlers run on the event loop thread, never on a worker thread racing the loop."""

from __future__ import annotations

import threading
from collections.abc import ValuesView
from typing import Any

import httpx

from meshplane.pilot.debug.http import build_app
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.xds.discovery import DiscoveryServer

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
