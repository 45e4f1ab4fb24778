"""Pod metadata from the Kubernetes API (recorded PodList and watch-stream JSON in the API's
shape, no API server here), from a pods file, and served to the plugin over the agent's socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kube_client

from meshplane.cni.agent.kubewatch import pod_reflector
from meshplane.cni.agent.podcache import PodCache, PodsFileError, load_pods_file, pod_from_api
from meshplane.cni.agent.server import AgentServer
from meshplane.cni.plugin import agentclient
from meshplane.cni.rules.pods import PodInfo, skip_reason
from meshplane.shared.reflector import Reflector
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually

K8S = Path(__file__).parent / "testdata" / "k8s"
EXCLUDED = ("istio-system", "kube-system")
PODS = "/api/v1/pods"


def podlist() -> dict[str, Any]:
    body: dict[str, Any] = json.loads((K8S / "podlist-node-1.json").read_text())
    return body


@asynccontextmanager
async def reflecting(api: RecordedAPI, cache: PodCache, node: str) -> AsyncIterator[Reflector]:
    """The agent's pod reflector against the recorded API, running until the block ends."""
    stop = asyncio.Event()
    with serve(api) as url:
        reflector = pod_reflector(kube_client.ApiClient(kube_client.Configuration(host=url)), cache, node)
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            group.create_task(reflector.run(stop))
            try:
                yield reflector
            finally:
                stop.set()  # run() returns: the group ends


async def test_recorded_api_pod_list_fills_the_cache_with_what_the_plugin_needs() -> None:
    api = RecordedAPI()
    api.add_list(PODS, podlist())
    cache = PodCache(node="node-1")
    async with reflecting(api, cache, "node-1") as reflector:
        await asyncio.wait_for(cache.synced.wait(), 10)
        assert reflector.resource_version == "51234"
        (query,) = api.requested(PODS, watch=False)
        assert query["fieldSelector"] == "spec.nodeName=node-1"
    reviews = cache.get("bookinfo", "reviews-v1-5d9f8b7c6d-x7k2p")
    assert reviews is not None
    assert reviews.containers == ("reviews", "istio-proxy")
    assert reviews.init_containers == ("istio-validation",)
    assert reviews.ips == ("10.244.1.12", "fd00:10:244:1::c")
    assert reviews.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] == "3306"
    assert reviews.labels["app"] == "reviews" and reviews.node == "node-1"
    decisions = {p.name.split("-")[0]: skip_reason(p, EXCLUDED) for p in cache.pods()}
    assert decisions["reviews"] is None
    assert "istio-init" in str(decisions["ratings"])
    assert "excluded" in str(decisions["coredns"])


async def test_recorded_api_watch_stream_adds_updates_deletes_and_relists_the_difference_on_410() -> None:
    api = RecordedAPI()
    api.add_list(PODS, podlist())
    lines = (K8S / "watch-pods-node-1.jsonl").read_bytes().splitlines()
    api.add_watch(PODS, [json.loads(line) for line in lines])  # ends with 410 Gone
    # The relist: the watched changes, plus two made while no watch ran (reviews updated, coredns gone).
    after = podlist()
    watched = {json.loads(line)["object"]["metadata"].get("name"): json.loads(line) for line in lines}
    after["metadata"]["resourceVersion"] = "51300"
    after["items"] = [p for p in after["items"] if p["metadata"]["name"].startswith("reviews")]
    after["items"][0]["metadata"]["resourceVersion"] = "51290"
    after["items"].append(watched["productpage-v1-7f9c6b5d4-zz9yy"]["object"])
    api.add_list(PODS, after)
    cache = PodCache(node="node-1")
    async with reflecting(api, cache, "node-1") as reflector:

        async def relisted() -> bool:
            return reflector.lists == 2 and reflector.resource_version == "51300"

        await eventually(relisted, "the relist after 410 Gone")
        watches = [q.get("resourceVersion") for q in api.requested(PODS, watch=True)]
        assert watches == ["51234", "51300"]
        assert reflector.expired == 1
        # 3 listed + productpage; its update; ratings deleted; then only the relist's difference:
        # reviews changed, coredns gone, productpage (already known at that version) not again.
        assert reflector.events == {"ADDED": 4, "MODIFIED": 2, "DELETED": 2}
    product = cache.get("bookinfo", "productpage-v1-7f9c6b5d4-zz9yy")
    assert product is not None and product.ips == ("10.244.1.14",)
    assert sorted(p.name.split("-")[0] for p in cache.pods()) == ["productpage", "reviews"]


async def test_pods_on_other_nodes_are_not_served() -> None:
    api = RecordedAPI()
    api.add_list(PODS, podlist())
    cache = PodCache(node="node-2")
    async with reflecting(api, cache, "node-2"):
        await asyncio.wait_for(cache.synced.wait(), 10)
    assert cache.pods() == []


def test_pods_file_accepts_pod_yaml_documents_and_names_a_bad_item(tmp_path: Path) -> None:
    good = tmp_path / "pods.yaml"
    good.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c}]}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n"
    )
    assert [(p.namespace, p.name) for p in load_pods_file(good)] == [("x", "a"), ("default", "b")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("items:\n- metadata: {name: ok}\n- metadata: {namespace: x}\n")
    with pytest.raises(PodsFileError, match=r"bad\.yaml: item 1: pod has no metadata\.name"):
        load_pods_file(bad)


async def test_agent_socket_serves_pods_and_takes_events(tmp_path: Path) -> None:
    cache = PodCache()
    await cache.replace_all(pod_from_api(p) for p in podlist()["items"])
    events: list[dict[str, object]] = []
    handled = asyncio.Event()

    async def on_event(event: dict[str, object]) -> None:
        events.append(event)
        handled.set()

    socket_path = tmp_path / "run" / "agent.sock"
    server = AgentServer(socket_path, cache, on_event, pod_wait=3.0)
    async with server.serving():
        assert socket_path.stat().st_mode & 0o777 == 0o600
        sock = str(socket_path)
        data = await asyncio.to_thread(agentclient.fetch_pod, sock, "bookinfo", "reviews-v1-5d9f8b7c6d-x7k2p")
        assert data is not None
        assert PodInfo.from_json(data) == cache.get("bookinfo", "reviews-v1-5d9f8b7c6d-x7k2p")

        # A pod the watch delivers while the plugin's request is waiting is still answered.
        late = asyncio.create_task(asyncio.to_thread(agentclient.fetch_pod, sock, "bookinfo", "late"))

        async def request_waiting() -> bool:
            return cache.waiting == 1

        await eventually(request_waiting, "the plugin's request to wait for the pod")
        await cache.upsert(PodInfo(namespace="bookinfo", name="late"))
        assert (await late) == PodInfo(namespace="bookinfo", name="late").to_json()
        dispatch = asyncio.create_task(server.dispatch_events())
        await asyncio.to_thread(agentclient.report, sock, {"type": "ADD", "name": "x", "captured": True})
        async with asyncio.timeout(10):
            await handled.wait()
        dispatch.cancel()
        assert events == [{"type": "ADD", "name": "x", "captured": True}]
        server.pod_wait = 0.1
        assert await asyncio.to_thread(agentclient.fetch_pod, sock, "bookinfo", "nope") is None
    assert not socket_path.exists()
