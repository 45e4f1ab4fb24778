"""``pilot_proxy_convergence_time``: one observation per push, once the proxy acknowledged every
type the push sent it, not when it acknowledges the first ones while the push is still sending
(as happens when a push to thousands of proxies waits between a proxy's types)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.app import Pilot
from meshplane.pilot.generators import common
from meshplane.pilot.xds import delta
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import service_key
from meshplane.shared.testing.polling import eventually

from .test_ads_protocol import NODE, Client, pilot  # noqa: F401  (pilot: the fixture)

pytestmark = pytest.mark.timeout(60)


def observations(p: Pilot) -> float:
    assert p.server is not None
    (metric,) = p.server.metrics.convergence.collect()
    return next(s.value for s in metric.samples if s.name.endswith("_count"))


async def subscribe(c: Client, type_url: str, node: bool = False) -> None:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url)
    if node:
        req.node.id = NODE
    c.requests.put_nowait(req)
    resp = await c.recv()
    assert resp.type_url == type_url
    c.requests.put_nowait(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=resp.nonce))


async def test_a_push_is_one_observation_even_when_its_first_type_is_acked_mid_push(
    pilot: tuple[Pilot, Buckets],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, buckets = pilot
    assert p.server is not None
    server = p.server
    # The push waits after sending CDS until the test lets it go on: the proxy's CDS ACK lands
    # while LDS is still to be sent.
    armed = False
    cds_sent, go_on = asyncio.Event(), asyncio.Event()
    send = delta.send

    async def held_send(*args: Any, **kwargs: Any) -> frozenset[str]:
        sent = await send(*args, **kwargs)
        if armed and args[2] == common.CLUSTER and sent:
            cds_sent.set()
            await go_on.wait()
        return sent

    monkeypatch.setattr(delta, "send", held_send)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = Client(channel, delta=True)
        await subscribe(c, common.CLUSTER, node=True)
        await subscribe(c, common.LISTENER)
        (conn,) = server.connections.values()
        await eventually(conn.synced, "the proxy in sync")
        before = observations(p)

        armed = True  # a new service on a new port: a new cluster, then a new listener
        port = registry_pb2.ServicePort(name="http", number=9090, protocol=registry_pb2.HTTP)
        host = "c.default.svc.cluster.local"
        await buckets.services.put(
            service_key("default", host),
            registry_pb2.Service(hostname=host, namespace="default", ports=[port]),
        )
        cds = await c.recv()
        assert cds.type_url == common.CLUSTER and f"outbound|9090||{host}" in {r.name for r in cds.resources}
        await asyncio.wait_for(cds_sent.wait(), 5)
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.CLUSTER, response_nonce=cds.nonce)
        )
        cds_watch = conn.watched[common.CLUSTER]
        await eventually(lambda: cds_watch.nonce_acked == cds.nonce, "Pilot to record the CDS ACK")
        assert observations(p) == before  # the push has not sent LDS yet: not converged

        go_on.set()
        lds = await c.recv()
        assert lds.type_url == common.LISTENER and "0.0.0.0_9090" in {r.name for r in lds.resources}
        c.requests.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(type_url=common.LISTENER, response_nonce=lds.nonce)
        )
        await eventually(lambda: observations(p) == before + 1, "one convergence observation")
        await eventually(conn.synced, "the proxy in sync")
        assert observations(p) == before + 1
        c.call.cancel()
