"""Revisions: each Pilot reads unlabelled config and config labelled ``istio.io/rev`` with its own
revision, never another revision's (Istio's LabelsInRevision). Two real Pilots, ``default`` and
``canary``, share one bus, as they share one Galley; an ADS client asks each for its routes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshplane.pilot.app import Pilot
from meshplane.pilot.generators import common
from meshplane.pilot.settings import Settings, parse_args
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.bus.buckets import config_key
from meshplane.shared.testing.polling import eventually

from .test_ads_protocol import NODE, seed

pytestmark = pytest.mark.timeout(60)

HOST = "a.default.svc.cluster.local"


def virtual_service(name: str, route: str, labels: dict[str, str]) -> config_pb2.ConfigResource:
    spec = {"hosts": [HOST], "http": [{"name": route, "route": [{"destination": {"host": HOST}}]}]}
    return config_pb2.ConfigResource(
        kind="VirtualService",
        group="networking.istio.io",
        version="v1",
        namespace="default",
        name=name,
        labels=labels,
        spec_json=json.dumps(spec),
    )


async def start(bus: Bus, revision: str, stop: asyncio.Event) -> tuple[Pilot, asyncio.Task[None]]:
    settings = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debug_port=0,
        nats_url=bus.opts.url,
        pilot_id=f"pilot-{revision}",
        debounce_after=0.02,
        max_requests_per_second=1000,
        revision=revision,
    )
    pilot = Pilot(settings)
    task = asyncio.create_task(pilot.run(stop))

    async def ready() -> bool:
        return pilot.ready

    await eventually(ready, timeout=20, what=f"Pilot {revision} ready")
    return pilot, task


@pytest.fixture
async def pilots(bus: Bus) -> AsyncIterator[tuple[dict[str, Pilot], Buckets]]:
    buckets = Buckets(bus)
    await seed(buckets)
    stop = asyncio.Event()
    started = [await start(bus, revision, stop) for revision in ("default", "canary")]
    yield {p.settings.revision: p for p, _ in started}, buckets
    stop.set()
    await asyncio.wait_for(asyncio.gather(*(t for _, t in started)), 20)


async def route_names(pilot: Pilot) -> set[str]:
    """The names of the HTTP routes Pilot sends for ``HOST``'s port 80 (RDS ``80``)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.grpc_port}") as channel:
        stream = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )
        request = discovery_pb2.DiscoveryRequest(type_url=common.ROUTE, resource_names=["80"])
        request.node.id = NODE

        async def one() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield request
            await asyncio.Event().wait()

        responses = stream(one())
        response = await asyncio.wait_for(responses.read(), 10)
        responses.cancel()
    names = set()
    for resource in response.resources:
        config = route_pb2.RouteConfiguration.FromString(resource.value)
        for vhost in config.virtual_hosts:
            if any(domain.startswith(HOST) for domain in vhost.domains):
                names |= {r.name for r in vhost.routes}
    return names


async def test_a_revision_reads_its_own_and_unlabelled_config_only(
    pilots: tuple[dict[str, Pilot], Buckets],
) -> None:
    pilot, buckets = pilots
    key = config_key("networking.istio.io", "VirtualService", "default", "reviews")
    await buckets.config.put(key, virtual_service("reviews", "canary-only", {"istio.io/rev": "canary"}))

    async def served(revision: str, name: str) -> bool:
        return name in await route_names(pilot[revision])

    await eventually(lambda: served("canary", "canary-only"), timeout=10, what="canary serves its VS")
    assert "canary-only" not in await route_names(pilot["default"])

    # relabelled to the default revision: it leaves the canary and reaches the default
    await buckets.config.put(key, virtual_service("reviews", "default-only", {"istio.io/rev": "default"}))
    await eventually(lambda: served("default", "default-only"), timeout=10, what="default serves it")
    assert not await route_names(pilot["canary"]) & {"canary-only", "default-only"}

    # without the label, every revision reads it
    await buckets.config.put(key, virtual_service("reviews", "everyone", {"app": "reviews"}))
    for revision in ("default", "canary"):
        await eventually(lambda r=revision: served(r, "everyone"), timeout=10, what=f"{revision} serves it")


def test_the_revision_flag_is_istios_revision_and_must_be_a_dns_label(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args(["--xds-plaintext"], {}).revision == "default"
    assert parse_args(["--xds-plaintext"], {"REVISION": "canary"}).revision == "canary"
    assert parse_args(["--xds-plaintext", "--revision", "1-25-0"], {}).revision == "1-25-0"
    with pytest.raises(SystemExit) as exited:
        parse_args(["--xds-plaintext", "--revision", "1.25.0"], {})
    assert exited.value.code == 2
    assert "--revision '1.25.0': not a DNS label" in capsys.readouterr().err
