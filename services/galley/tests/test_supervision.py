"""Galley's background tasks run supervised: a failure is logged with its traceback, counted in
``galley_task_failures`` on ``/metrics``, and the task restarted, so later changes still publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshplane.galley.api.apps import create_monitoring_app
from meshplane.galley.api.state import GalleyState
from meshplane.galley.app import Galley
from meshplane.galley.settings import parse_args
from meshplane.galley.sources.model import ConfigObject
from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.bus.buckets import config_key
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(90)


def vs_yaml(name: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}]
  http:
  - route:
    - destination: {{host: {name}}}
"""


def vs_key(name: str) -> str:
    return config_key("networking.istio.io", "VirtualService", "default", name)


class FailingGalley(Galley):
    """A galley whose apply raises while a VirtualService named ``boom`` is in the directory."""

    def apply(self, objects: Iterable[ConfigObject]) -> None:
        objs = list(objects)
        if any(o.name == "boom" for o in objs):
            raise RuntimeError("injected failure while applying a change")
        super().apply(objs)


async def task_failures(monitoring: str, task: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{monitoring}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "galley_task_failures_total" and sample.labels.get("task") == task:
                return sample.value
    return 0.0


@contextlib.asynccontextmanager
async def running(galley: Galley) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(galley.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_a_failing_directory_watch_is_logged_counted_and_restarted(
    nats_server: NatsServer, bus: Bus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.yaml").write_text(vs_yaml("a"))
    mon = free_port()
    settings = parse_args(
        [
            "--nats-url",
            nats_server.url,
            "--config-dir",
            str(conf),
            "--webhook-addr",
            f"127.0.0.1:{free_port()}",
            "--monitoring-addr",
            f"127.0.0.1:{mon}",
            "--debug-addr",
            "127.0.0.1:0",
        ]
    )
    monitoring = f"http://127.0.0.1:{mon}"
    kv = Buckets(bus).config
    galley = FailingGalley(settings)
    async with running(galley) as task:

        async def ready() -> bool:
            assert not task.done(), task
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    return (await client.get(f"{monitoring}/ready")).status_code == 200
            except httpx.ConnectError:  # not listening yet
                return False

        await eventually(ready, "galley to become ready")
        before = await task_failures(monitoring, "directory-watch")
        with caplog.at_level(logging.ERROR, logger="meshplane.tasks"):
            (conf / "boom.yaml").write_text(vs_yaml("boom"))

            async def counted() -> bool:
                return await task_failures(monitoring, "directory-watch") >= before + 1

            await eventually(counted, "the failure to be counted on /metrics")
        failed = [r for r in caplog.records if "task directory-watch failed" in r.getMessage()]
        assert failed and failed[0].exc_info is not None
        assert "injected failure" in caplog.text

        # The watch was restarted: a later change is followed and published; galley stays up.
        (conf / "boom.yaml").unlink()
        (conf / "b.yaml").write_text(vs_yaml("b"))

        async def published() -> bool:
            return (
                await kv.get(config_key("networking.istio.io", "VirtualService", "default", "b")) is not None
            )

        await eventually(published, "a change made after the restart to reach the bus")
        assert await kv.get(vs_key("boom")) is None
        await eventually(ready, "galley to be ready again")
        assert not task.done()


async def test_ready_is_503_while_a_critical_task_is_down() -> None:
    up = True
    state = GalleyState(ready=True, tasks_running=lambda: up)
    app = create_monitoring_app(state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://galley") as client:
        assert (await client.get("/ready")).status_code == 200
        up = False  # e.g. the publisher failed and waits for its restart
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200  # alive: no reason to kill it
