"""The generator registry: a type added by one module and one registration is served over SotW
and Delta by an in-process Pilot on a real nats-server; the registry's rules; PushContext is
frozen."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import wrappers_pb2

from meshplane.pilot.app import Pilot
from meshplane.pilot.debug.syncz import syncz
from meshplane.pilot.generators import common
from meshplane.pilot.generators.registry import REGISTRY
from meshplane.pilot.model.config import Port, Service
from meshplane.pilot.model.generator import FlavorGenerator, Registry, UnknownType, XdsGenerator
from meshplane.pilot.model.push_context import build_push_context
from meshplane.pilot.model.resources import Parts
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import service_key
from meshplane.shared.testing.polling import eventually

from .test_ads_protocol import HOSTS, NODE, Client, first, pilot  # noqa: F401  (pilot: the fixture)
from .toy_generator import TOY, ToyGenerator

pytestmark = pytest.mark.timeout(60)


def _configs(resp: discovery_pb2.DiscoveryResponse) -> dict[str, str]:
    """A SotW response's toy resources: name → the host its StringValue carries."""
    out = {}
    for packed in resp.resources:
        ext, value = extension_pb2.TypedExtensionConfig(), wrappers_pb2.StringValue()
        assert packed.Unpack(ext) and ext.typed_config.Unpack(value)
        out[ext.name] = value.value
    return out


def _names(resp: discovery_pb2.DeltaDiscoveryResponse) -> set[str]:
    return {r.name for r in resp.resources}


async def test_a_type_added_by_one_module_and_one_registration_is_served_over_sotw_and_delta(
    pilot: tuple[Pilot, Buckets],  # noqa: F811
) -> None:
    p, buckets = pilot
    toy_names = {f"toy-{h}" for h in HOSTS}
    with REGISTRY.registered(ToyGenerator()):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{p.grpc_port}") as channel:
            sotw = Client(channel, delta=False)
            sotw.requests.put_nowait(first(TOY))
            resp = await sotw.recv()
            assert resp.type_url == TOY and _configs(resp) == {f"toy-{h}": h for h in HOSTS}
            sotw.requests.put_nowait(
                discovery_pb2.DiscoveryRequest(
                    type_url=TOY, version_info=resp.version_info, response_nonce=resp.nonce
                )
            )

            delta = Client(channel, delta=True)
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=TOY)
            req.node.id = NODE
            delta.requests.put_nowait(req)
            dresp = await delta.recv()
            assert dresp.type_url == TOY and _names(dresp) == toy_names
            delta.requests.put_nowait(
                discovery_pb2.DeltaDiscoveryRequest(type_url=TOY, response_nonce=dresp.nonce)
            )

            # syncz has the new type's columns; both streams acknowledged it
            async def toy_synced() -> bool:
                rows = syncz(p.server) if p.server else []
                return len(rows) == 2 and all(r["toy_status"] == "SYNCED" for r in rows)

            await eventually(toy_synced, "both proxies SYNCED on the toy type in /debug/syncz", 10)

            # a new service concerns the toy type: SotW gets them all again, Delta only the new one
            new_host = "c.default.svc.cluster.local"
            port = registry_pb2.ServicePort(name="http", number=80, protocol=registry_pb2.HTTP)
            await buckets.services.put(
                service_key("default", new_host),
                registry_pb2.Service(hostname=new_host, namespace="default", ports=[port]),
            )
            pushed = await sotw.recv()
            assert pushed.type_url == TOY and set(_configs(pushed)) == toy_names | {f"toy-{new_host}"}
            dpushed = await delta.recv()
            assert dpushed.type_url == TOY and _names(dpushed) == {f"toy-{new_host}"}
            for c in (sotw, delta):
                c.call.cancel()
                await asyncio.gather(c.reader, return_exceptions=True)
    assert TOY not in REGISTRY


def test_the_registry_serves_the_four_envoy_types_in_istios_push_order() -> None:
    assert [g.short for g in REGISTRY.ordered] == ["cds", "eds", "lds", "rds"]
    assert [g.type_url for g in REGISTRY.ordered if g.wildcard] == [common.CLUSTER, common.LISTENER]
    assert REGISTRY[common.ENDPOINT].resend_with == common.CLUSTER


def test_the_registry_refuses_a_second_generator_for_a_type_and_a_variant_of_an_unknown_type() -> None:
    reg = Registry()
    reg.register(ToyGenerator())
    with pytest.raises(ValueError, match="already registered"):
        reg.register(ToyGenerator())

    class SameShortName(ToyGenerator):
        type_url = "type.googleapis.com/other"

    with pytest.raises(ValueError, match="already registered as 'toy'"):
        reg.register(SameShortName())

    class Undeclared(XdsGenerator):
        def parts(self, cache: Any, ctx: Any, proxy: Any, names: frozenset[str] | None) -> Parts:
            return ()

    with pytest.raises(TypeError, match="Undeclared does not declare type_url, short, debug_name, push_"):
        reg.register(Undeclared())
    with pytest.raises(ValueError, match="before its grpc variant"):
        reg.register(FlavorGenerator("grpc", common.CLUSTER, lambda *_: {}))
    with pytest.raises(UnknownType):
        reg[common.CLUSTER]


def test_push_context_cannot_be_changed_after_it_is_built() -> None:
    svc = Service("a.default.svc.cluster.local", "default", (Port("http", 80, "HTTP"),))
    ctx = build_push_context("1", {}, {"a": svc}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.jwks = {"https://keys": "{}"}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.services = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.configs["VirtualService"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.services.append(svc)  # type: ignore[attr-defined]
    later = ctx.with_jwks({"https://keys": "{}"})
    assert later.jwks == {"https://keys": "{}"} and ctx.jwks == {}
    assert later.services == ctx.services and later.version == ctx.version
