"""Auto-registration and health reports on real ADS streams (an in-process Pilot, a real bus):
a missing WorkloadGroup fails the stream with Istio's FailedPrecondition; a stream that only
reports health (``meshctl workload-probe``) is not a proxy connection, and its reports become the
entry's Healthy condition, as reports on the proxy's own stream do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from meshplane.pilot.app import Pilot
from meshplane.pilot.generators import common
from meshplane.pilot.model import workload_entry as we
from meshplane.pilot.xds import ads
from meshplane.pilot.xds.autoregister import HEALTH_TYPE
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import config_key, workload_key
from meshplane.shared.testing.polling import eventually

from .test_ads_protocol import Client, pilot  # noqa: F401 - the in-process Pilot fixture

pytestmark = pytest.mark.timeout(60)

VM = "sidecar~10.0.0.7~vm-1.default~default.svc.cluster.local"
KEY = workload_key("default", "db-10.0.0.7")


def _request(type_url: str, error: str = "") -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url=type_url)
    req.node.id = VM
    meta = {"AUTO_REGISTER_GROUP": "db", "PROXY_CONFIG": {"readinessProbe": {"tcpSocket": {"port": 5432}}}}
    json_format.ParseDict(meta, req.node.metadata)
    if error:
        req.error_detail.code = 13
        req.error_detail.message = error
    return req


async def _put_group(buckets: Buckets) -> None:
    spec = {"template": {"labels": {"app": "db"}, "ports": {"tcp": 5432}}}
    group = config_pb2.ConfigResource(
        kind="WorkloadGroup",
        group="networking.istio.io",
        version="v1",
        namespace="default",
        name="db",
        spec_json=json.dumps(spec),
    )
    await buckets.config.put(config_key("networking.istio.io", "WorkloadGroup", "default", "db"), group)


async def _condition(p: Pilot, want: str) -> None:
    def healthy_is_want() -> bool:
        entry = p.state.registered.get(KEY)
        return entry is not None and any(c.type == we.HEALTHY and c.status == want for c in entry.conditions)

    await eventually(healthy_is_want, f"the entry's Healthy condition {want}")


async def test_a_missing_group_fails_the_stream(pilot: tuple[Pilot, Buckets]) -> None:  # noqa: F811
    p, _ = pilot
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        c = Client(channel, delta=False)
        c.requests.put_nowait(_request(common.CLUSTER))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await c.reader
        assert exc.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot find WorkloadGroup default/db" in (exc.value.details() or "")


async def test_health_reports_from_either_stream_set_the_condition(pilot: tuple[Pilot, Buckets]) -> None:  # noqa: F811
    p, buckets = pilot
    await _put_group(buckets)
    await _wait_group(p)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
        proxy = Client(channel, delta=False)
        proxy.requests.put_nowait(_request(common.CLUSTER))
        assert (await proxy.recv()).type_url == common.CLUSTER
        assert p.server is not None and len(p.server.connections) == 1
        entry: Any = p.state.registered.get(KEY) or await _wait_entry(p)
        assert entry.entry.annotations[we.HEALTH_CHECKS_ENABLED] == "true"
        # the prober's own stream: reports only, never a proxy connection
        prober = Client(channel, delta=False)
        prober.requests.put_nowait(_request(HEALTH_TYPE))
        await _condition(p, "True")
        assert len(p.server.connections) == 1
        # Istio's agent reports on the proxy's stream: that works too
        proxy.requests.put_nowait(_request(HEALTH_TYPE, "connect 127.0.0.1:5432: refused"))
        await _condition(p, "False")
        prober.call.cancel()
        proxy.call.cancel()
        await asyncio.gather(prober.reader, proxy.reader, return_exceptions=True)


async def _wait_group(p: Pilot) -> None:
    await eventually(lambda: p.state.group("default", "db") is not None, "the WorkloadGroup in Pilot's state")


async def _wait_entry(p: Pilot) -> Any:
    await eventually(lambda: KEY in p.state.registered, "the entry in Pilot's state")
    return p.state.registered[KEY]


async def _leave_while_a_write_is_held(
    p: Pilot,
    buckets: Buckets,
    monkeypatch: pytest.MonkeyPatch,
    held: Callable[[we.Entry], bool],
    after_write: bool,
) -> None:
    """A VM proxy connects and leaves while the first entry write that ``held`` picks is held
    (before it goes out, or ``after_write`` while its acknowledgement is awaited); grpcio then
    cancels the stream's handler, as it does when it learns that the call is gone. The entry must
    still be deleted once the grace period has passed."""
    await _put_group(buckets)
    assert p.registration is not None
    reg = p.registration
    reg.grace_period = 0.2
    await _wait_group(p)
    handlers: list[asyncio.Task[Any]] = []
    holding, release = asyncio.Event(), asyncio.Event()
    put, parse = reg.kv.put, ads.parse_proxy

    def parse_recording_the_handler(*args: Any) -> Any:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        return parse(*args)

    async def held_put(key: str, entry: we.Entry) -> Any:
        hold = held(entry) and not holding.is_set()
        if hold and not after_write:
            holding.set()
            await release.wait()
        done = await put(key, entry)
        if hold and after_write:
            holding.set()
            await release.wait()
        return done

    monkeypatch.setattr(ads, "parse_proxy", parse_recording_the_handler)
    monkeypatch.setattr(reg.kv, "put", held_put)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}")
    proxy = Client(channel, delta=False)
    proxy.requests.put_nowait(_request(common.CLUSTER))
    await _wait_entry(p)
    await channel.close()  # the proxy's connection is gone, as when its Envoy dies
    await asyncio.gather(proxy.reader, return_exceptions=True)
    await asyncio.wait_for(holding.wait(), 10)
    [handler] = handlers
    handler.cancel()
    await asyncio.wait_for(asyncio.wait(handlers), 10)
    release.set()
    await eventually(
        lambda: KEY not in p.state.registered,
        "the entry of a proxy that left deleted after its grace period",
        5,
    )


@pytest.mark.parametrize(
    ("held", "after_write"),
    [
        # cancelled while it marks the entry disconnected: the mark used to be cut short with no
        # deletion scheduled
        pytest.param(lambda e: we.DISCONNECTED_AT in e.entry.annotations, False, id="closing"),
        # cancelled while it registers the proxy, once the entry is written connected: the entry
        # used to stay connected, with no disconnect to follow
        pytest.param(lambda e: we.CONNECTED_AT in e.entry.annotations, True, id="opening"),
    ],
)
async def test_an_entry_is_deleted_after_the_grace_period_though_grpc_cancelled_the_stream_mid_write(
    pilot: tuple[Pilot, Buckets],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    held: Callable[[we.Entry], bool],
    after_write: bool,
) -> None:
    p, buckets = pilot
    await _leave_while_a_write_is_held(p, buckets, monkeypatch, held, after_write)
