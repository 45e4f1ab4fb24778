"""Pilot's view of a remote cluster's registry, read over its JetStream domain on a real
nats-server: merge by namespace sameness, cluster and network on each endpoint, EDS pushes for
remote changes, and staleness by the remote Galley's record against an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from meshplane.pilot.ingest.remote import RemoteClustersCollector, RemoteRegistry, RemoteWatcher
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.model.config import Port, Service, workload_from_bus
from meshplane.pilot.model.push_request import PushRequest
from meshplane.proto.bus.v1 import registry_pb2, status_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.integration

NS = "default"
WEB = "web.default.svc.cluster.local"
ONLY_REMOTE = "db.default.svc.cluster.local"
T0 = 1_800_000_000.0


@pytest.fixture
async def cluster2(tmp_path: Path) -> AsyncIterator[tuple[Bus, Bus]]:
    """Cluster 2's server (domain ``cluster2``): its Galley, and a Pilot reading it by domain."""
    server = NatsServer(
        store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", domain="cluster2"
    ).start()
    galley = await Bus.connect(BusOptions(url=server.url, identity="galley", publish_deadline=5))
    pilot = await Bus.connect(BusOptions(url=server.url, identity="pilot", publish_deadline=5, remote=True))
    try:
        yield galley, pilot
    finally:
        await galley.close()
        await pilot.close()
        server.stop()


def instance(name: str, address: str, host: str, network: str = "") -> registry_pb2.WorkloadInstance:
    return registry_pb2.WorkloadInstance(
        name=name, namespace=NS, address=address, services=[host], network=network, cluster_id="Kubernetes"
    )


def galley_record(at: float) -> status_pb2.ComponentInfo:
    ts = Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return status_pb2.ComponentInfo(component="galley", instance="g", updated=ts)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def test_remote_endpoints_merge_push_and_leave_while_the_cluster_is_stale(
    cluster2: tuple[Bus, Bus],
) -> None:
    galley, pilot = cluster2
    b2 = Buckets(galley)
    port = registry_pb2.ServicePort(name="http", number=80, protocol=registry_pb2.HTTP)
    await b2.services.put("default.web", registry_pb2.Service(hostname=WEB, namespace=NS, ports=[port]))
    await b2.services.put(
        "default.db", registry_pb2.Service(hostname=ONLY_REMOTE, namespace=NS, ports=[port])
    )
    await b2.workloads.put("default.web-2", instance("web-2", "10.2.0.1", WEB, network="net2"))
    await b2.workloads.put("default.db-2", instance("db-2", "10.2.0.9", ONLY_REMOTE))
    await b2.components.put("galley.g", galley_record(T0 - 1))

    state = State()
    # cluster 1's own web (port 8080 here: the local Service wins over cluster 2's port 80)
    state.services["default.web"] = Service(WEB, NS, (Port("http", 8080, "HTTP"),))
    local = registry_pb2.WorkloadInstance(name="web-1", namespace=NS, address="10.1.0.1", services=[WEB])
    state.workloads["default.web-1"] = workload_from_bus(local)
    clock, pushes = Clock(), list[PushRequest]()
    remote = state.remotes["cluster2"] = RemoteRegistry("cluster2", "cluster2")
    watcher = RemoteWatcher(pilot, remote, state.hosts_of, stale_after=30.0, clock=clock)
    task = asyncio.ensure_future(watcher.run())
    try:

        async def replayed() -> bool:
            return remote.synced == {"services", "workloads", "components"}

        await eventually(replayed, "cluster 2's registry replayed over its domain")
        assert not remote.stale  # its Galley wrote a second ago
        ctx = state.snapshot("1")
        web = {(e.address, e.cluster_id, e.network) for e in ctx.endpoints(WEB, NS, 8080)}
        assert web == {("10.1.0.1", "", ""), ("10.2.0.1", "cluster2", "net2")}  # one service, both clusters
        assert {e.address for e in ctx.endpoints(ONLY_REMOTE, NS, 80)} == {
            "10.2.0.9"
        }  # a remote-only service
        assert [s.ports[0].number for s in ctx.services if s.hostname == WEB] == [8080]

        watcher.submit = pushes.append
        await b2.workloads.put("default.web-3", instance("web-3", "10.2.0.2", WEB, network="net2"))

        async def pushed() -> bool:
            return any(WEB in p.eds_hosts and not p.full for p in pushes)

        await eventually(pushed, "an EDS push for the remote workload")
        assert "10.2.0.2" in {e.address for e in state.snapshot("2").endpoints(WEB, NS, 8080)}

        pushes.clear()
        clock.now = T0 + 29
        assert watcher.check() is None  # still fresh
        clock.now = T0 + 31  # 32 s since its Galley wrote: stale
        req = watcher.check()
        assert req is not None and {WEB, ONLY_REMOTE} <= req.eds_hosts and pushes == [req]
        ctx = state.snapshot("3")
        assert {e.address for e in ctx.endpoints(WEB, NS, 8080)} == {"10.1.0.1"}
        assert ctx.endpoints(ONLY_REMOTE, NS, 80) == []
        assert [s.hostname for s in ctx.services if s.hostname == ONLY_REMOTE]  # the service itself stays
        metrics = {
            m.name: m.samples[0].value for m in RemoteClustersCollector(state.remotes, clock).collect()
        }
        assert metrics["pilot_remote_cluster_stale"] == 1.0 and metrics["pilot_remote_cluster_endpoints"] == 3
        assert remote.describe(clock.now)["stale"] is True

        pushes.clear()
        await b2.components.put("galley.g", galley_record(T0 + 30.5))  # its Galley writes again

        async def fresh() -> bool:
            return not remote.stale

        await eventually(fresh, "cluster 2 fresh again after a new Galley record")
        assert any({WEB, ONLY_REMOTE} <= p.eds_hosts for p in pushes)
        addresses = {e.address for e in state.snapshot("4").endpoints(WEB, NS, 8080)}
        assert addresses == {"10.1.0.1", "10.2.0.1", "10.2.0.2"}

        await b2.components.delete("galley.g")  # its Galley withdrew and none replaced it

        async def stale() -> bool:
            return remote.stale

        await eventually(stale, "cluster 2 stale with no Galley record")
    finally:
        task.cancel()
