"""Proxy identity, settings from Istio's variables and push-queue merging (debounce: test_debounce)."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import struct_pb2

from meshplane.pilot.model.proxy import InvalidNode, ProxyType, parse_proxy
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.settings import Settings
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.push_queue import PushQueue
from meshplane.shared.testing.polling import eventually


def test_istio_node_id_and_metadata() -> None:
    md = struct_pb2.Struct()
    md.update(
        {
            "NAMESPACE": "shop",
            "LABELS": {"app": "web"},
            "SERVICE_ACCOUNT": "web-sa",
            "INSTANCE_IPS": "10.0.0.5,fd00::5",
            "WORKLOAD_NAME": "web",
            "CLUSTER_ID": "c1",
            "MESH_ID": "m1",
        }
    )
    p = parse_proxy("sidecar~10.0.0.5~web-7d9.shop~shop.svc.cluster.local", md)
    assert p.type is ProxyType.SIDECAR and p.id == "web-7d9.shop" and p.name == "web-7d9"
    assert p.namespace == "shop" and p.labels == {"app": "web"} and p.service_account == "web-sa"
    assert p.instance_ips == ("10.0.0.5", "fd00::5") and p.cluster_id == "c1" and p.mesh_id == "m1"
    router = parse_proxy("router~10.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local", None)
    assert router.type is ProxyType.ROUTER and router.namespace == "istio-system"


@pytest.mark.parametrize(
    "node", ["sidecar~1.2.3.4", "ztunnel~1.2.3.4~p.ns~ns.svc.cluster.local", "sidecar~1.2.3.4~pod~"]
)
def test_bad_node_ids_are_named(node: str) -> None:
    with pytest.raises(InvalidNode, match="node id"):
        parse_proxy(node, None)


def test_settings_follow_istio_knobs() -> None:
    s = Settings.from_env(
        {
            "PILOT_DEBOUNCE_AFTER": "250ms",
            "PILOT_DEBOUNCE_MAX": "2s",
            "PILOT_ENABLE_EDS_DEBOUNCE": "false",
            "PILOT_PUSH_THROTTLE": "7",
            "PILOT_MAX_REQUESTS_PER_SECOND": "3",
        }
    )
    assert (s.debounce_after, s.debounce_max, s.enable_eds_debounce) == (0.25, 2.0, False)
    assert (s.push_throttle, s.max_requests_per_second) == (7, 3.0)
    auto = Settings.from_env({})
    assert auto.debounce_after == 0.1 and auto.debounce_max == 10.0 and 20 <= auto.push_throttle <= 100
    with pytest.raises(ValueError, match="PILOT_DEBOUNCE_AFTER"):
        Settings.from_env({"PILOT_DEBOUNCE_AFTER": "soon"})


async def test_push_queue_merges_pending_pushes_per_connection() -> None:
    seen: list[PushRequest] = []
    gate = asyncio.Event()

    async def push(conn: Connection, req: PushRequest) -> None:
        seen.append(req)
        await gate.wait()

    q = PushQueue(push, workers=2)
    q.start()
    conn = Connection(parse_proxy("sidecar~1.1.1.1~a.ns~ns.svc.cluster.local", None), "peer", delta=False)
    conn.initialized.set()
    q.enqueue(conn, PushRequest(full=False, eds_hosts=frozenset({"h0"})))
    await eventually(lambda: len(seen) == 1, "the first push in flight", 5)
    for i in range(1, 5):
        q.enqueue(conn, PushRequest(full=False, eds_hosts=frozenset({f"h{i}"})))
    gate.set()
    await eventually(lambda: q.pending() == 0, "the push queue drained", 5)
    await q.stop()
    assert len(seen) == 2  # the four requests made while in flight became one push
    assert seen[1].eds_hosts == frozenset({"h1", "h2", "h3", "h4"})


def test_bus_config_is_checked_against_the_typed_model() -> None:
    from meshplane.pilot.model.config import config_from_bus
    from meshplane.proto.bus.v1 import config_pb2
    from meshplane.shared.config.models import VirtualService

    good = config_pb2.ConfigResource(
        kind="VirtualService",
        group="networking.istio.io",
        version="v1",
        namespace="shop",
        name="web",
        spec_json='{"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]}',
    )
    spec = config_from_bus(good).spec
    assert config_from_bus(good).creation_time == 0.0
    good.creation_timestamp.FromJsonString("2026-01-02T03:04:05Z")
    assert config_from_bus(good).creation_time == 1767323045.0  # orders EnvoyFilters
    assert isinstance(spec, VirtualService)
    assert spec.http is not None and spec.http[0].route is not None
    assert spec.http[0].route[0].destination.host == "web"
    bad = config_pb2.ConfigResource(
        kind="VirtualService",
        namespace="shop",
        name="broken",
        spec_json='{"hosts": ["web"], "http": "not a list"}',
    )
    with pytest.raises(ValueError, match=r"VirtualService shop/broken.*http"):
        config_from_bus(bad)


def test_bus_config_of_a_kind_without_a_model_is_rejected_by_name() -> None:
    from meshplane.pilot.model.config import config_from_bus
    from meshplane.proto.bus.v1 import config_pb2

    odd = config_pb2.ConfigResource(kind="LocalWorkload", namespace="shop", name="web", spec_json="{}")
    with pytest.raises(ValueError, match=r"LocalWorkload shop/web: no typed model for kind 'LocalWorkload'"):
        config_from_bus(odd)


def test_push_context_lookups_return_typed_specs() -> None:
    from meshplane.pilot.model.config import Config
    from meshplane.pilot.model.push_context import build_push_context
    from meshplane.shared.config.models import Resolution, ServiceEntry, Sidecar

    se = Config.parse(
        "ServiceEntry",
        "networking.istio.io",
        "v1",
        "shop",
        "db",
        {"hosts": ["db.shop.svc.cluster.local"], "resolution": "DNS", "ports": [{"number": 5432}]},
    )
    ctx = build_push_context("1", {"se": se}, {}, {})
    (found,) = ctx.of_kind(ServiceEntry)
    assert found.spec.resolution is Resolution.DNS
    assert ctx.of_kind(Sidecar) == ()
    (svc,) = ctx.services
    assert (svc.hostname, svc.resolution, svc.ports[0].number) == ("db.shop.svc.cluster.local", "DNS", 5432)
