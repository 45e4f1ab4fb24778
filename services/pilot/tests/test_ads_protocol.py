"""The ADS protocol as a client sees it, against an in-process Pilot on a real nats-server.

Covers version prefixes, ACK / NACK / stale nonces for SotW, and Delta sending only what changed
(with EDS re-sent for re-sent clusters).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.app import Pilot
from meshplane.pilot.generators import common
from meshplane.pilot.settings import Settings
from meshplane.proto.bus.v1 import config_pb2, registry_pb2
from meshplane.shared.bus import Buckets, Bus, make_key
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

NODE = "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local"
HOSTS = ["a.default.svc.cluster.local", "b.default.svc.cluster.local"]


async def seed(b: Buckets) -> None:
    for i, host in enumerate(HOSTS):
        port = registry_pb2.ServicePort(name="http", number=80, protocol=registry_pb2.HTTP)
        await b.services.put(
            service_key("default", host),
            registry_pb2.Service(hostname=host, namespace="default", ports=[port]),
        )
        await b.workloads.put(
            workload_key("default", f"w{i}"),
            registry_pb2.WorkloadInstance(
                name=f"w{i}",
                namespace="default",
                address=f"10.1.0.{i}",
                services=[host],
                labels={"app": f"w{i}"},
            ),
        )


def dr(host: str, subset: str) -> config_pb2.ConfigResource:
    spec = {"host": host, "subsets": [{"name": subset, "labels": {"version": subset}}]}
    return config_pb2.ConfigResource(
        kind="DestinationRule",
        group="networking.istio.io",
        version="v1",
        namespace="default",
        name=host.split(".")[0],
        spec_json=json.dumps(spec),
    )


class Client:
    """One ADS stream with an explicit request queue."""

    def __init__(self, channel: grpc.aio.Channel, delta: bool) -> None:
        name = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        req_type: Any = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        resp_type: Any = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.call = channel.stream_stream(
            f"/envoy.service.discovery.v3.AggregatedDiscoveryService/{name}",
            request_serializer=req_type.SerializeToString,
            response_deserializer=resp_type.FromString,
        )(self._gen())
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _gen(self) -> AsyncIterator[Any]:
        while True:
            yield await self.requests.get()

    async def _read(self) -> None:
        async for resp in self.call:
            self.responses.put_nowait(resp)

    async def recv(self, timeout: float = 5.0) -> Any:
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def nothing(self) -> bool:
        """True if Pilot answered nothing sent so far: it handles a stream's requests in order, so a
        fresh LDS request (always answered) is a barrier, and its answer must be the next response."""
        barrier = discovery_pb2.DiscoveryRequest(type_url=common.LISTENER)
        barrier.node.id = NODE
        self.requests.put_nowait(barrier)
        return bool((await self.recv()).type_url == common.LISTENER)


@pytest.fixture
async def pilot(bus: Bus) -> AsyncIterator[tuple[Pilot, Buckets]]:
    buckets = Buckets(bus)
    await seed(buckets)
    p = Pilot(
        Settings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            http_host="127.0.0.1",
            http_port=0,
            debug_port=0,
            nats_url=bus.opts.url,
            pilot_id="unit",
            debounce_after=0.02,
            max_requests_per_second=1000,
        )
    )
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    for _ in range(200):
        if p.ready:
            break
        await asyncio.sleep(0.05)
    assert p.ready
    yield p, buckets
    stop.set()
    await asyncio.wait_for(task, 20)


def first(type_url: str, names: list[str] | None = None) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names or [])
    req.node.id = NODE
    return req


async def test_sotw_ack_nack_and_stale_nonce(pilot: tuple[Pilot, Buckets]) -> None:
    p, buckets = pilot
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = Client(channel, delta=False)
        c.requests.put_nowait(first(common.CLUSTER))
        resp = await c.recv()
        assert resp.version_info.startswith("unit-")  # per-process prefix
        names = {r.value for r in resp.resources}
        assert len(names) >= 4
        c.requests.put_nowait(
            discovery_pb2.DiscoveryRequest(
                type_url=common.CLUSTER, version_info=resp.version_info, response_nonce=resp.nonce
            )
        )
        eds_name = f"outbound|80||{HOSTS[0]}"
        c.requests.put_nowait(
            discovery_pb2.DiscoveryRequest(type_url=common.ENDPOINT, resource_names=[eds_name])
        )
        eds = await c.recv()
        assert eds.type_url == common.ENDPOINT and len(eds.resources) == 1
        # a request carrying an old nonce is stale: ignored, even with new names
        c.requests.put_nowait(
            discovery_pb2.DiscoveryRequest(
                type_url=common.ENDPOINT, response_nonce="old", resource_names=[eds_name, "x"]
            )
        )
        assert await c.nothing()
        # NACK: recorded, not answered; the connection keeps its last sent version
        nack = discovery_pb2.DiscoveryRequest(
            type_url=common.ENDPOINT, response_nonce=eds.nonce, resource_names=[eds_name]
        )
        nack.error_detail.message = "rejected on purpose"
        c.requests.put_nowait(nack)
        assert await c.nothing()
        assert p.server is not None
        watched = next(iter(p.server.connections.values())).watched[common.ENDPOINT]
        assert watched.last_nack == "rejected on purpose" and watched.nacks == 1
        # a config change pushes CDS again, with a new version
        await buckets.config.put(
            config_key("networking.istio.io", "DestinationRule", "default", "a"), dr(HOSTS[0], "v1")
        )
        pushed = await c.recv()
        assert pushed.type_url == common.CLUSTER and pushed.version_info != resp.version_info
        c.call.cancel()
        await asyncio.gather(c.reader, return_exceptions=True)


async def test_delta_sends_only_changes_and_resends_eds(pilot: tuple[Pilot, Buckets]) -> None:
    p, buckets = pilot
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = Client(channel, delta=True)
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER)
        req.node.id = NODE
        c.requests.put_nowait(req)
        cds = await c.recv()
        names = {r.name for r in cds.resources}
        assert f"outbound|80||{HOSTS[0]}" in names and "BlackHoleCluster" in names
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER, response_nonce=cds.nonce)
        )
        eds_names = [f"outbound|80||{h}" for h in HOSTS]
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.ENDPOINT, resource_names_subscribe=eds_names)
        )
        eds = await c.recv()
        assert {r.name for r in eds.resources} == set(eds_names)
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.ENDPOINT, response_nonce=eds.nonce)
        )
        # a DestinationRule for host a changes only a's clusters: CDS carries those, EDS re-sends a
        await buckets.config.put(
            config_key("networking.istio.io", "DestinationRule", "default", "a"), dr(HOSTS[0], "v1")
        )
        cds2 = await c.recv()
        assert cds2.type_url == common.CLUSTER
        assert {r.name for r in cds2.resources} == {f"outbound|80||{HOSTS[0]}", f"outbound|80|v1|{HOSTS[0]}"}
        eds2 = await c.recv()
        assert eds2.type_url == common.ENDPOINT
        assert {r.name for r in eds2.resources} == {f"outbound|80||{HOSTS[0]}"}
        # removing the rule removes the subset cluster
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER, response_nonce=cds2.nonce)
        )
        await buckets.config.delete(config_key("networking.istio.io", "DestinationRule", "default", "a"))
        cds3 = await c.recv()
        assert list(cds3.removed_resources) == [f"outbound|80|v1|{HOSTS[0]}"]
        c.call.cancel()
        await asyncio.gather(c.reader, return_exceptions=True)


async def _delta_cds(channel: grpc.aio.Channel, node: str, versions: dict[str, str] | None = None) -> Client:
    c = Client(channel, delta=True)
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=common.CLUSTER, initial_resource_versions=versions or {}
    )
    req.node.id = node
    c.requests.put_nowait(req)
    return c


def _ack(resp: Any) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)


async def test_delta_proxies_of_one_scope_share_a_response_and_reconnects_get_only_what_changed(
    pilot: tuple[Pilot, Buckets],
) -> None:
    p, buckets = pilot
    nodes = [f"sidecar~10.0.0.{i}~client-{i}.default~default.svc.cluster.local" for i in (1, 2)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        clients = [await _delta_cds(channel, n) for n in nodes]
        first_cds = [await c.recv() for c in clients]
        for c, resp in zip(clients, first_cds, strict=True):
            c.requests.put_nowait(_ack(resp))
        held = {r.name: r.version for r in first_cds[0].resources}

        # a new service: each proxy gets exactly the new cluster, in one response built once
        new_host = "c.default.svc.cluster.local"
        port = registry_pb2.ServicePort(name="http", number=80, protocol=registry_pb2.HTTP)
        await buckets.services.put(
            service_key("default", new_host),
            registry_pb2.Service(hostname=new_host, namespace="default", ports=[port]),
        )
        pushed = [await c.recv() for c in clients]
        assert [{r.name for r in resp.resources} for resp in pushed] == [{f"outbound|80||{new_host}"}] * 2
        assert pushed[0].SerializeToString() == pushed[1].SerializeToString()

        # a proxy reconnecting with what it held before gets only the difference
        held["outbound|80||stale.default.svc.cluster.local"] = "old"
        again = await _delta_cds(channel, "sidecar~10.0.0.3~client-3.default~default.svc.cluster.local", held)
        resp = await again.recv()
        assert {r.name for r in resp.resources} == {f"outbound|80||{new_host}"}
        assert list(resp.removed_resources) == ["outbound|80||stale.default.svc.cluster.local"]
        for c in (*clients, again):
            c.call.cancel()
            await asyncio.gather(c.reader, return_exceptions=True)


async def test_sotw_ack_that_changes_the_subscription_gets_the_new_names_and_one_that_repeats_it_nothing(
    pilot: tuple[Pilot, Buckets],
) -> None:
    p, _ = pilot
    a, b = (f"outbound|80||{h}" for h in HOSTS)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = Client(channel, delta=False)
        c.requests.put_nowait(first(common.ENDPOINT, [a]))
        eds = await c.recv()
        assert eds.type_url == common.ENDPOINT and len(eds.resources) == 1

        def ack(resp: Any, names: list[str]) -> discovery_pb2.DiscoveryRequest:
            return discovery_pb2.DiscoveryRequest(
                type_url=common.ENDPOINT,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=names,
            )

        c.requests.put_nowait(ack(eds, [a]))  # same names: nothing new to say
        assert await c.nothing()
        c.requests.put_nowait(ack(eds, [a, b]))  # one more cluster: both sent
        grown = await c.recv()
        assert len(grown.resources) == 2
        c.requests.put_nowait(ack(grown, [b]))  # fewer: the remaining one
        shrunk = await c.recv()
        assert len(shrunk.resources) == 1
        c.requests.put_nowait(ack(shrunk, [b]))
        assert await c.nothing()
        c.call.cancel()
        await asyncio.gather(c.reader, return_exceptions=True)


async def test_delta_answers_ack_nack_and_stale_nonce_show_in_sync_state_metrics_and_status(
    pilot: tuple[Pilot, Buckets],
) -> None:
    p, buckets = pilot
    assert p.server is not None
    registry = p.server.metrics.registry

    async def status_row(type_url: str) -> Any:
        rec = await buckets.proxy_status.get(make_key("unit", "client-1.default"))
        return next((t for t in rec.types if t.type_url == type_url), None) if rec is not None else None

    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = await _delta_cds(channel, NODE)
        cds = await c.recv()
        (conn,) = p.server.connections.values()
        assert not conn.synced()

        # a stale nonce answers nothing: counted, still out of sync
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER, response_nonce="0")
        )
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.LISTENER)
        )  # always answered
        lds = await c.recv()
        assert lds.type_url == common.LISTENER
        assert registry.get_sample_value("pilot_xds_expired_nonce", {"type": "cds"}) == 1.0
        assert not conn.synced()

        # the CDS ACK shows on the bus; the listener response is still unanswered
        c.requests.put_nowait(_ack(cds))

        async def cds_acked() -> bool:
            row = await status_row(common.CLUSTER)
            return row is not None and row.nonce_acked == row.nonce_sent == cds.nonce

        await eventually(cds_acked, "the status record shows the CDS ACK")
        assert not conn.synced()
        c.requests.put_nowait(_ack(lds))

        async def lds_acked() -> bool:
            row = await status_row(common.LISTENER)
            return row is not None and row.nonce_acked == row.nonce_sent == lds.nonce and conn.synced()

        await eventually(lds_acked, "every response answered, the LDS ACK on the bus")

        # a push the proxy rejects: answered, counted, and shown with its message
        await buckets.config.put(
            config_key("networking.istio.io", "DestinationRule", "default", "a"), dr(HOSTS[0], "v1")
        )
        pushed = await c.recv()
        assert pushed.type_url == common.CLUSTER
        nack = _ack(pushed)
        nack.error_detail.message = "rejected on purpose"
        c.requests.put_nowait(nack)

        async def rejected() -> bool:
            row = await status_row(common.CLUSTER)
            return (
                row is not None and row.last_nack == "rejected on purpose" and row.nonce_acked == pushed.nonce
            )

        await eventually(rejected, "the NACK in the status record")
        assert registry.get_sample_value("pilot_total_xds_rejects", {"type": "cds"}) == 1.0
        c.call.cancel()
        await asyncio.gather(c.reader, return_exceptions=True)
