"""Federation over a real leafnode (two nats-servers, two JetStream domains, TLS + nkeys): what a
remote cluster may read of a cluster's bus, what it may not, and watches across the leafnode."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg

from meshplane.proto.bus.v1 import config_pb2, registry_pb2, status_pb2
from meshplane.shared.bus import Buckets, Bus, BusError, EventType, PermissionDenied, TypedKV, WatchEvent
from meshplane.shared.bus.names import (
    COMPONENTS_BUCKET,
    CONFIG_BUCKET,
    SERVICES_BUCKET,
    TRUST_BUCKET,
    WORKLOADS_BUCKET,
)
from meshplane.shared.testing.federation import FederatedCluster, federated_clusters, stop_all
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[FederatedCluster]]:
    made = federated_clusters(tmp_path)
    try:
        yield made
    finally:
        stop_all(made)


def svc(host: str) -> registry_pb2.Service:
    return registry_pb2.Service(hostname=host, namespace="default")


async def next_event(w: AsyncIterator[WatchEvent[registry_pb2.Service]]) -> WatchEvent[registry_pb2.Service]:
    async with asyncio.timeout(20):
        return await w.__anext__()


async def joined(c: FederatedCluster, other: str) -> None:
    """Wait until ``c``'s server has the leafnode to ``other`` (its log says the domains)."""

    async def linked() -> bool:
        return f'remote "{other}"' in (c.server.log_file or Path()).read_text()

    await eventually(linked, f"{c.cluster_id}'s leafnode to {other}")


async def test_a_remote_pilot_reads_and_watches_the_registry_of_another_cluster(
    clusters: list[FederatedCluster],
) -> None:
    c1, c2 = clusters
    galley1, pilot2 = await c1.connect("galley"), await c2.connect("pilot", remote=True)
    try:
        await Buckets(galley1).services.put("default.a", svc("a.default.svc.cluster.local"))
        await Buckets(galley1).components.put("galley.g1", status_pb2.ComponentInfo(component="galley"))
        await joined(c2, "cluster1")
        remote = TypedKV(pilot2, SERVICES_BUCKET, registry_pb2.Service, domain="cluster1")
        got = await remote.get("default.a")
        assert got is not None and got.hostname == "a.default.svc.cluster.local"
        components = TypedKV(pilot2, COMPONENTS_BUCKET, status_pb2.ComponentInfo, domain="cluster1")
        assert (await components.get("galley.g1")) is not None
        # the same bucket name in cluster 2's own domain is cluster 2's (empty) bucket
        assert await TypedKV(pilot2, SERVICES_BUCKET, registry_pb2.Service).get("default.a") is None
        async with remote.watch(heartbeat=0.5) as w:
            first = await next_event(w)
            assert (first.type, first.key) == (EventType.PUT, "default.a")
            assert (await next_event(w)).type is EventType.SYNCED
            await Buckets(galley1).services.put("default.b", svc("b.default.svc.cluster.local"))
            ev = await next_event(w)
            assert (ev.type, ev.key) == (EventType.PUT, "default.b")
        with pytest.raises(BusError, match="read-only view of another cluster"):
            await remote.put("default.c", svc("c"))
    finally:
        await galley1.close()
        await pilot2.close()


async def api_answers(bus: Bus, subject: str, payload: bytes = b"") -> bool:
    """Whether a request to ``subject`` gets any answer across the leafnode (replies to an inbox
    of Pilot's remote connection, whose traffic the leafnode relays)."""
    inbox = f"_INBOX_remote_pilot.probe{next(_probes)}"
    sub = await bus.nc.subscribe(inbox, max_msgs=1)
    try:
        await bus.nc.publish(subject, payload, reply=inbox)
        msg = await sub.next_msg(timeout=1.0)
    except nats.errors.TimeoutError:
        return False
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return msg.headers is None or msg.headers.get("Status") != "503"  # 503: no responders


_probes = itertools.count()


async def test_the_federation_identity_reads_only_the_registry_and_writes_nothing(
    clusters: list[FederatedCluster],
) -> None:
    """A cluster-2 client with no restrictions of its own (``admin``) is held to the leafnode's
    ``federation`` permissions on cluster 1: registry reads pass, the rest never arrives."""
    c1, c2 = clusters
    galley1, admin2 = await c1.connect("galley"), await c2.connect("admin")
    citadel1 = await c1.connect("citadel")
    try:
        b1 = Buckets(galley1)
        await b1.services.put("default.a", svc("a"))
        await b1.workloads.put("default.w", registry_pb2.WorkloadInstance(name="w"))
        config = config_pb2.ConfigResource(kind="VirtualService", namespace="default", name="vs")
        await b1.config.put("networking.istio.io.VirtualService.default.vs", config)
        await Buckets(citadel1).trust.put("cluster.local", status_pb2.TrustBundle())
        await joined(c2, "cluster1")
        api = "$JS.cluster1.API"
        for bucket in (SERVICES_BUCKET, WORKLOADS_BUCKET):  # control: the leafnode carries reads
            assert await api_answers(admin2, f"{api}.STREAM.INFO.KV_{bucket}"), bucket
        for bucket in (CONFIG_BUCKET, TRUST_BUCKET, "mesh-meshconfig", "mesh-proxy-status"):
            assert not await api_answers(admin2, f"{api}.STREAM.INFO.KV_{bucket}"), bucket
            assert not await api_answers(admin2, f"{api}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.x"), bucket
        remote_config = TypedKV(admin2, CONFIG_BUCKET, config_pb2.ConfigResource, domain="cluster1")
        with pytest.raises((BusError, TimeoutError, nats.errors.Error)):
            await asyncio.wait_for(remote_config.get("networking.istio.io.VirtualService.default.vs"), 15)
        # writes: stream management and KV subjects never cross (cluster 2 has no such streams)
        assert not await api_answers(admin2, f"{api}.STREAM.CREATE.KV_evil", b'{"name":"KV_evil"}')
        assert not await api_answers(admin2, f"{api}.STREAM.PURGE.KV_{SERVICES_BUCKET}")
        assert not await api_answers(admin2, f"{api}.STREAM.DELETE.KV_{CONFIG_BUCKET}")
        for subject in (f"$KV.{CONFIG_BUCKET}.x", f"$KV.{TRUST_BUCKET}.x", f"$KV.{SERVICES_BUCKET}.x"):
            assert not await api_answers(admin2, subject, b"forged"), subject
        assert await b1.config.get("networking.istio.io.VirtualService.default.vs") is not None
        assert (await b1.services.get("x")) is None

        # and the other way: cluster 1's clients reach only cluster 2's registry
        galley2, admin1 = await c2.connect("galley"), await c1.connect("admin")
        try:
            b2 = Buckets(galley2)
            await b2.services.put("default.z", svc("z"))
            await b2.config.put("networking.istio.io.VirtualService.default.vs", config)
            api2 = "$JS.cluster2.API"
            assert await api_answers(admin1, f"{api2}.STREAM.INFO.KV_{SERVICES_BUCKET}")
            assert not await api_answers(admin1, f"{api2}.STREAM.INFO.KV_{CONFIG_BUCKET}")
            assert not await api_answers(admin1, f"{api2}.STREAM.DELETE.KV_{SERVICES_BUCKET}")
            # a bucket only cluster 2 has: a forged write from cluster 1 finds no stream to land in
            await b2.mesh_config.put("mesh", config_pb2.ConfigResource(kind="MeshConfig"))
            assert not await api_answers(admin1, "$KV.mesh-meshconfig.forged", b"x")
            assert await b2.mesh_config.get("forged") is None
        finally:
            await galley2.close()
            await admin1.close()
    finally:
        for b in (galley1, admin2, citadel1):
            await b.close()


async def test_the_federation_identity_cannot_write_as_a_client_either(
    clusters: list[FederatedCluster],
) -> None:
    """Its seed is also a client credential of cluster 1: as such it may not write config or trust."""
    c1, _ = clusters
    fed = await c1.connect("federation", publish_deadline=2.0)
    try:
        with pytest.raises(PermissionDenied, match="federation"):
            await Buckets(fed).config.put("a", config_pb2.ConfigResource(kind="VirtualService"))
        with pytest.raises(PermissionDenied, match="federation"):
            await Buckets(fed).trust.put("cluster.local", status_pb2.TrustBundle())
    finally:
        await fed.close()


async def test_a_remote_watch_survives_the_leaf_server_dying_and_coming_back(
    clusters: list[FederatedCluster],
) -> None:
    """Cluster 1's Pilot watches cluster 2's registry; cluster 2's nats-server is SIGKILLed and
    restarted (its store kept): the watch carries on with the changes made after its return."""
    c1, c2 = clusters
    pilot1, galley2 = await c1.connect("pilot", remote=True), await c2.connect("galley")
    try:
        await Buckets(galley2).services.put("default.a", svc("a"))
        await joined(c1, "cluster2")
        remote = TypedKV(pilot1, SERVICES_BUCKET, registry_pb2.Service, domain="cluster2")
        async with remote.watch(heartbeat=0.3) as w:
            assert (await next_event(w)).key == "default.a"
            assert (await next_event(w)).type is EventType.SYNCED
            restarts = w.restarts
            c2.kill()
            pending = asyncio.ensure_future(next_event(w))
            c2.restart()
            await Buckets(galley2).services.put("default.b", svc("b"))  # galley2 reconnects itself
            ev = await pending
            assert (ev.type, ev.key) == (EventType.PUT, "default.b")
            assert w.restarts > restarts  # the consumer was recreated on the restarted server
    finally:
        await pilot1.close()
        await galley2.close()


async def test_replies_to_a_pilots_local_reads_never_cross_the_leafnode(
    clusters: list[FederatedCluster],
) -> None:
    """A cluster-2 client listening on every inbox of Pilot's hears nothing of cluster 1's Pilot
    reading its own config (its local connection); the same path carries the remote inbox (the
    control, sent after the config was delivered: one leafnode connection keeps the order)."""
    c1, c2 = clusters
    galley1, pilot1, admin1 = await c1.connect("galley"), await c1.connect("pilot"), await c1.connect("admin")
    admin2 = await c2.connect("admin")
    heard: list[str] = []

    async def overheard(msg: Msg) -> None:
        heard.append(msg.subject)

    try:
        await admin2.nc.subscribe("_INBOX_pilot.>", cb=overheard)
        control = await admin2.nc.subscribe("_INBOX_remote_pilot.control")
        await admin2.nc.flush()

        async def carried() -> bool:
            await admin1.nc.publish("_INBOX_remote_pilot.control", b"ping")
            with contextlib.suppress(nats.errors.TimeoutError):
                await control.next_msg(timeout=0.2)
                return True
            return False

        await eventually(carried, "the remote inbox carried from cluster 1 to cluster 2")
        config = config_pb2.ConfigResource(kind="VirtualService", namespace="default", name="secret")
        await Buckets(galley1).config.put("networking.istio.io.VirtualService.default.secret", config)
        async with Buckets(pilot1).config.watch() as w:
            async with asyncio.timeout(20):
                assert (await w.__anext__()).key == "networking.istio.io.VirtualService.default.secret"
        await admin1.nc.publish("_INBOX_remote_pilot.control", b"after")
        while (await control.next_msg(timeout=10)).data != b"after":
            pass
        assert heard == []
    finally:
        for b in (galley1, pilot1, admin1, admin2):
            await b.close()
