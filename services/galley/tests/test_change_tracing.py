"""Galley's half of a config change's trace, on a real nats-server.

A changed file is one ``galley.config_change`` trace with a ``galley.validate`` span per object
and a ``galley.publish`` span per written key, and the bus message carries the publish span's
context (what Pilot continues). The Kubernetes source (recorded API responses) traces the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import get_current_span

from meshplane.galley.publish import publisher as publisher_module
from meshplane.galley.publish.publisher import CONFIG, Publisher
from meshplane.galley.sources import directory, files, kubernetes
from meshplane.galley.sources.directory import DirectorySource
from meshplane.galley.sources.kubernetes import KubernetesSource, api_client, istio_resources
from meshplane.galley.sources.model import ConfigObject
from meshplane.shared.bus import Buckets, Bus, EventType
from meshplane.shared.bus.buckets import config_key
from meshplane.shared.testing.kubeapi import RecordedAPI, serve

pytestmark = pytest.mark.timeout(60)

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: %s}
"""
DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews}
"""
VS_KEY = config_key("networking.istio.io", "VirtualService", "default", "reviews")


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for module in (directory, files, publisher_module, kubernetes):
        monkeypatch.setattr(module, "_tracer", provider.get_tracer("test"))
    yield memory
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_file_change_is_one_trace_carried_on_the_bus(
    bus: Bus, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    (tmp_path / "reviews.yaml").write_text(VS % "v1" + "---\n" + DR)
    publisher = Publisher(bus)
    source = DirectorySource(
        tmp_path, lambda snap: publisher.set_desired(CONFIG, {k: o.to_message() for k, o in snap.items()})
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        assert source.refresh()
        await asyncio.wait_for(publisher.wait_synced(), 20)
        exporter.clear()
        async with Buckets(bus).config.watch() as watch:
            async for ev in watch:
                if ev.type is EventType.SYNCED:
                    break
            (tmp_path / "reviews.yaml").write_text(VS % "v2" + "---\n" + DR)
            assert source.refresh({"reviews.yaml"})
            await asyncio.wait_for(publisher.wait_synced(), 20)
            async for ev in watch:
                if ev.type is EventType.PUT and ev.key == VS_KEY:
                    carried = get_current_span(ev.trace_context()).get_span_context()
                    break
        assert not source.refresh()  # nothing changed: no new trace
    finally:
        stop.set()
        await task
        publisher.close()

    (root,) = named(exporter, "galley.config_change")
    assert root.parent is None
    assert root.attributes is not None and list(root.attributes["galley.files"]) == ["reviews.yaml"]  # type: ignore[arg-type]
    validates = named(exporter, "galley.validate")
    assert len(validates) == 2  # both objects in the file were validated
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in validates)
    (publish,) = named(exporter, "galley.publish")  # only the changed VirtualService is written
    assert publish.parent is not None and publish.parent.span_id == root.context.span_id
    assert publish.attributes is not None and publish.attributes["bus.key"] == VS_KEY
    # the message on the bus carries the publish span: a reader continues this very trace
    assert (carried.trace_id, carried.span_id) == (root.context.trace_id, publish.context.span_id)


async def test_recorded_api_flush_is_a_traced_config_change(exporter: InMemorySpanExporter) -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "7"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
    }
    api = RecordedAPI()
    for resource in istio_resources():
        items = [vs] if resource.path.endswith("/virtualservices") else []
        api.add_list(resource.path, {"kind": "List", "metadata": {"resourceVersion": "7"}, "items": items})
    applied: list[list[ConfigObject]] = []
    with serve(api) as url:
        source = KubernetesSource(api_client(url), lambda objs: applied.append(list(objs)), istio_resources())
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            await asyncio.wait_for(source.wait_synced(stop), 30)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert [o.name for o in applied[-1]] == ["reviews"]
    root = named(exporter, "galley.config_change")[-1]
    assert root.attributes is not None and root.attributes["galley.source"] == "kubernetes"
    (validate,) = named(exporter, "galley.validate")
    assert validate.parent is not None and validate.parent.span_id == root.context.span_id
    assert validate.attributes is not None and "VirtualService default/reviews" in str(
        validate.attributes["galley.object"]
    )
