"""Envoy's SecretDiscoveryService (SotW ``StreamSecrets``, ``DeltaSecrets``, ``FetchSecrets``).

Each stream keeps what it sent per resource name and pushes again whenever the cache has a
newer version of a subscribed secret (a rotated ``default``, a changed ``ROOTCA``). Names the
agent does not know are never answered, as Istio's agent does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from meshplane.citadel.nodeagent.cache import SecretCache

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

#: a SotW or Delta DiscoveryRequest (Envoy's generated types are untyped for mypy)
Request: TypeAlias = Any


async def _next_event(
    queue: asyncio.Queue[Request | None], cache: SecretCache, generation: int
) -> tuple[bool, Request | None]:
    """Wait for a request or a cache change; return (is_request, request)."""
    get = asyncio.create_task(queue.get())
    changed = asyncio.create_task(cache.wait_changed(generation))
    done, pending = await asyncio.wait({get, changed}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if get in done:
        return True, get.result()
    return False, None


async def _pump(requests: AsyncIterator[Request], queue: asyncio.Queue[Request | None]) -> None:
    try:
        async for request in requests:
            await queue.put(request)
    finally:
        await queue.put(None)


class SecretDiscoveryServicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SecretCache) -> None:
        self._cache = cache

    def _packed(self, names: list[str]) -> tuple[list[any_pb2.Any], dict[str, str]]:
        resources: list[any_pb2.Any] = []
        versions: dict[str, str] = {}
        for name in names:
            secret, version = self._cache.secret(name), self._cache.version(name)
            if secret is None or version is None:
                continue
            packed = any_pb2.Any()
            packed.Pack(secret)
            resources.append(packed)
            versions[name] = version
        return resources, versions

    async def StreamSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=8)
        reader = asyncio.create_task(_pump(request_iterator, queue))
        names: list[str] = []
        sent: dict[str, str] = {}
        nonce = ""
        generation = self._cache.generation
        try:
            while True:
                generation = self._cache.generation
                is_request, request = await _next_event(queue, self._cache, generation)
                if is_request:
                    if request is None:
                        return
                    if request.error_detail.code:
                        log.warning("Envoy rejected secrets %s: %s", names, request.error_detail.message)
                    if request.response_nonce and request.response_nonce != nonce:
                        continue  # stale: a newer response is in flight
                    names = list(request.resource_names)
                    if not request.response_nonce:
                        sent = {}  # a fresh subscription gets everything
                resources, versions = self._packed(names)
                if not resources or all(sent.get(n) == v for n, v in versions.items()):
                    continue
                nonce = uuid.uuid4().hex
                sent = versions
                yield discovery_pb2.DiscoveryResponse(
                    version_info=",".join(f"{n}={v}" for n, v in sorted(versions.items())),
                    resources=resources,
                    type_url=SECRET_TYPE,
                    nonce=nonce,
                )
                log.debug("pushed secrets %s", versions)
        finally:
            reader.cancel()

    async def DeltaSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=8)
        reader = asyncio.create_task(_pump(request_iterator, queue))
        subscribed: set[str] = set()
        sent: dict[str, str] = {}
        try:
            while True:
                generation = self._cache.generation
                is_request, request = await _next_event(queue, self._cache, generation)
                if is_request:
                    if request is None:
                        return
                    if request.error_detail.code:
                        log.warning("Envoy rejected secrets: %s", request.error_detail.message)
                    if not request.response_nonce:
                        sent.update(request.initial_resource_versions)
                    subscribed |= set(request.resource_names_subscribe)
                    subscribed -= set(request.resource_names_unsubscribe)
                resources = []
                for name in sorted(subscribed):
                    secret, version = self._cache.secret(name), self._cache.version(name)
                    if secret is None or version is None or sent.get(name) == version:
                        continue
                    packed = any_pb2.Any()
                    packed.Pack(secret)
                    resources.append(discovery_pb2.Resource(name=name, version=version, resource=packed))
                    sent[name] = version
                if resources:
                    yield discovery_pb2.DeltaDiscoveryResponse(
                        resources=resources, type_url=SECRET_TYPE, nonce=uuid.uuid4().hex
                    )
        finally:
            reader.cancel()

    async def FetchSecrets(
        self, request: discovery_pb2.DiscoveryRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.DiscoveryResponse:
        resources, versions = self._packed(list(request.resource_names))
        return discovery_pb2.DiscoveryResponse(
            version_info=",".join(f"{n}={v}" for n, v in sorted(versions.items())),
            resources=resources,
            type_url=SECRET_TYPE,
            nonce=uuid.uuid4().hex,
        )
