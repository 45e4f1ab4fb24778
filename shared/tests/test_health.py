"""The shared /ready + /metrics surface: what a prober and a scraper see."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette

from meshplane.shared.health import MonitoringServer, health_routes, metrics_response, ready_response


def _app(reason: list[str | None], registry: CollectorRegistry) -> httpx.AsyncClient:
    routes = health_routes(registry, lambda: reason[0], ready_paths=("/readyz", "/ready"))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=Starlette(routes=routes)), base_url="http://svc"
    )


async def test_ready_follows_the_service_and_gives_its_reason() -> None:
    reason: list[str | None] = ["the push loop is down"]
    async with _app(reason, CollectorRegistry()) as client:
        for path in ("/ready", "/readyz"):
            down = await client.get(path)
            assert (down.status_code, down.text) == (503, "not ready: the push loop is down\n")
            assert down.headers["content-type"].startswith("text/plain")
        reason[0] = ""
        quiet = await client.get("/ready")
        assert (quiet.status_code, quiet.text) == (503, "not ready\n")
        reason[0] = None
        up = await client.get("/ready")
        assert (up.status_code, up.text) == (200, "ready\n")


async def test_metrics_is_the_registrys_prometheus_text() -> None:
    registry = CollectorRegistry()
    Counter("meshplane_test_things", "things", registry=registry).inc(3)
    async with _app([None], registry) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "meshplane_test_things_total 3.0" in response.text


def test_plain_responders_get_the_same_answers() -> None:
    assert ready_response(lambda: None) == (200, "ready\n")
    assert ready_response(lambda: "") == (503, "not ready\n")
    registry = CollectorRegistry()
    Counter("meshplane_test_other", "other", registry=registry).inc()
    body, content_type = metrics_response(registry)
    assert b"meshplane_test_other_total 1.0" in body and content_type.startswith("text/plain; version=")


async def test_only_get() -> None:
    async with _app([None], CollectorRegistry()) as client:
        assert (await client.post("/ready")).status_code == 405
        assert (await client.post("/metrics")).status_code == 405


async def test_plain_monitoring_server_over_a_socket() -> None:
    registry = CollectorRegistry()
    Counter("meshplane_test_served", "served", registry=registry).inc(2)
    reason: list[str | None] = ["loading"]
    server = MonitoringServer(registry, lambda: reason[0])
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            down = await client.get("/ready")
            assert (down.status_code, down.text) == (503, "not ready: loading\n")
            reason[0] = None
            up = await client.get("/ready")
            assert (up.status_code, up.text) == (200, "ready\n")
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200 and "meshplane_test_served_total 2.0" in scraped.text
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/ready")).status_code == 405
    finally:
        await server.stop()
