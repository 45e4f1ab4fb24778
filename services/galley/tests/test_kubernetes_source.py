"""The Kubernetes source against recorded API responses (real JSON shapes) from a local HTTP server.

No API server can run here, so list bodies and watch streams recorded in the API's format are
replayed: paged lists, ADDED/MODIFIED/DELETED, bookmarks, ``410 Gone`` as an ERROR event and as
an HTTP status, a 500 on the first try, and CRDs that are not installed (404).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from meshplane.galley.registry.builder import build_registry
from meshplane.galley.sources.kubernetes import CORE_RESOURCES, KubernetesSource, api_client, istio_resources
from meshplane.galley.sources.model import ConfigObject
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus.buckets import service_key, workload_key
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "testdata" / "kube"
SERVICES = "/api/v1/services"
VS = "/apis/networking.istio.io/v1/virtualservices"


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return body


def service(name: str, rv: str) -> dict[str, Any]:
    svc = copy.deepcopy(recorded("services")["items"][0])
    svc["metadata"].update(name=name, resourceVersion=rv, uid=f"uid-{name}")
    return svc


def bookmark(rv: str) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": rv}},
    }


def gone() -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "too old resource version: 4800 (5000)", "reason": "Expired", "code": 410},
    }  # fmt: skip


class Snapshots:
    def __init__(self) -> None:
        self.latest: dict[str, ConfigObject] = {}
        self.count = 0

    def __call__(self, objects: Iterable[ConfigObject]) -> None:
        self.latest = {f"{o.kind}/{o.namespace}/{o.name}": o for o in objects}
        self.count += 1


def full_api() -> RecordedAPI:
    api = RecordedAPI()
    for path, name in (
        (SERVICES, "services"),
        ("/apis/discovery.k8s.io/v1/endpointslices", "endpointslices"),
        ("/api/v1/pods", "pods"),
        ("/api/v1/namespaces", "namespaces"),
        (VS, "virtualservices"),
    ):
        api.add_list(path, recorded(name))
    return api


async def _start(
    api_url: str, snapshots: Snapshots
) -> tuple[KubernetesSource, asyncio.Event, asyncio.Task[None]]:
    source = KubernetesSource(api_client(api_url), snapshots, istio_resources() + list(CORE_RESOURCES))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    await asyncio.wait_for(source.wait_synced(stop), 30)
    return source, stop, task


async def test_recorded_api_lists_build_config_and_registry() -> None:
    api = full_api()
    api.add_list("/api/v1/pods", {"kind": "Status", "code": 500}, status=500)
    api.lists["/api/v1/pods"].reverse()  # the 500 first, then the recorded list
    snapshots = Snapshots()
    with serve(api) as url:
        source, stop, task = await _start(url, snapshots)
        try:
            objs = snapshots.latest
            # The valid VirtualService is taken with its Kubernetes resourceVersion; the invalid one is not.
            assert objs["VirtualService/default/reviews"].to_message().resource_version == "4400"
            assert "VirtualService/default/broken" not in objs
            assert "spec.hosts" in " ".join(source.status()["rejected"]["VirtualService default/broken"])
            services, workloads = build_registry(objs.values())
            svc = services[service_key("default", "reviews.default.svc.cluster.local")]
            assert svc.addresses == ["10.96.120.7"]
            assert list(svc.export_to) == ["."]
            assert [(p.name, p.protocol) for p in svc.ports] == [
                ("http", registry_pb2.HTTP),
                ("metrics", registry_pb2.HTTP),
                ("dns", registry_pb2.UDP),
            ]
            v1 = workloads[workload_key("default", "reviews-v1-7d4c8b9f5-abcde")]
            assert (v1.address, v1.service_account, v1.locality, v1.health) == (
                "10.244.1.17", "bookinfo-reviews", "eu-west/zone-a", registry_pb2.HEALTHY,
            )  # fmt: skip
            assert dict(v1.labels)["version"] == "v1"
            assert list(v1.services) == ["reviews.default.svc.cluster.local"]
            assert dict(v1.ports) == {"http": 9080}
            v2 = workloads[workload_key("default", "reviews-v2-5b7c9d8f6-fghij")]
            assert v2.health == registry_pb2.DRAINING
            # CRDs that are not installed answer 404 and count as empty.
            gateways = next(r for r in source.status()["resources"] if r["path"].endswith("/gateways"))
            assert "404" in gateways["lastError"]
            pods = next(r for r in source.status()["resources"] if r["path"] == "/api/v1/pods")
            assert pods["lists"] == 1
            assert len(api.requested("/api/v1/pods", watch=False)) == 2  # the 500, then the retry
        finally:
            stop.set()
            await task


async def test_recorded_api_watch_events_bookmarks_and_410_relist() -> None:
    api = full_api()
    api.add_watch(SERVICES, [
        {"type": "ADDED", "object": service("ratings", "4720")},
        {"type": "MODIFIED", "object": service("reviews", "4730")},
        bookmark("4800"),
    ])  # fmt: skip
    api.add_watch(SERVICES, [gone()])
    # The relist finds reviews gone; a watch from its version then answers 410 as an HTTP status once.
    api.add_list(
        SERVICES,
        {
            **recorded("services"),
            "metadata": {"resourceVersion": "5000"},
            "items": [service("ratings", "4999")],
        },
    )
    api.add_watch(SERVICES, 410)
    api.add_list(
        SERVICES,
        {
            **recorded("services"),
            "metadata": {"resourceVersion": "5100"},
            "items": [service("ratings", "5050")],
        },
    )
    api.add_watch(
        SERVICES,
        [
            {"type": "DELETED", "object": service("ratings", "5101")},
            {"type": "ADDED", "object": service("details", "5102")},
        ],
    )
    snapshots = Snapshots()
    with serve(api) as url:
        _source, stop, task = await _start(url, snapshots)
        try:

            async def only_details() -> bool:
                return {k for k in snapshots.latest if k.startswith("Service/")} == {
                    "Service/default/details"
                }

            await eventually(only_details, "the Service set after the watch events and relists")
            watches = [q.get("resourceVersion") for q in api.requested(SERVICES, watch=True)]
            assert watches[:4] == ["4711", "4800", "5000", "5100"]
            assert all(q.get("allowWatchBookmarks") == "true" for q in api.requested(SERVICES, watch=True))
            assert len(api.requested(SERVICES, watch=False)) == 3
        finally:
            stop.set()
            await task


async def test_recorded_api_paged_list_is_followed() -> None:
    api = full_api()
    page1 = {
        **recorded("services"),
        "metadata": {"resourceVersion": "", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDcxMX0"},
    }
    page2 = {
        **recorded("services"),
        "metadata": {"resourceVersion": "4711"},
        "items": [service("ratings", "4600")],
    }
    api.lists[SERVICES] = [(200, page1), (200, page2)]
    snapshots = Snapshots()
    with serve(api) as url:
        _source, stop, task = await _start(url, snapshots)
        try:
            assert {"Service/default/reviews", "Service/default/ratings"} <= set(snapshots.latest)
            continues = [q.get("continue") for q in api.requested(SERVICES, watch=False)]
            assert continues[:2] == [None, page1["metadata"]["continue"]]
        finally:
            stop.set()
            await task


async def test_a_failing_apply_ends_the_run_and_a_new_run_lists_again() -> None:
    api = full_api()
    calls = 0
    snapshots = Snapshots()

    def apply(objects: Iterable[ConfigObject]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a bug while applying")
        snapshots(objects)

    with serve(api) as url:
        source = KubernetesSource(api_client(url), apply, istio_resources() + list(CORE_RESOURCES))
        stop = asyncio.Event()
        with pytest.raises(RuntimeError, match="applying the Kubernetes snapshot failed") as failed:
            await asyncio.wait_for(source.run(stop), 30)
        assert isinstance(failed.value.__cause__, ValueError)
        lists = len(api.requested(VS, watch=False))
        # Run again, as galley's supervisor does: everything is listed again and applied.
        task = asyncio.create_task(source.run(stop))
        try:

            async def applied() -> bool:
                assert not task.done(), task
                return "VirtualService/default/reviews" in snapshots.latest

            await eventually(applied, "the snapshot applied by the second run")
            assert len(api.requested(VS, watch=False)) == lists + 1
        finally:
            stop.set()
            await task
