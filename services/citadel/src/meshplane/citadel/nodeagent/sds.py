"""Envoy's SecretDiscoveryService (SotW ``StreamSecrets``, ``DeltaSecrets``, ``FetchSecrets``).

Each stream belongs to one workload (see ``workloads``), keeps what it sent per resource name
and pushes again whenever that workload's cache has a newer version of a subscribed secret (a
rotated ``default``, a changed ``ROOTCA``). Names the agent does not know are never answered,
as Istio's agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, Protocol, TypeAlias

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from meshplane.citadel.nodeagent import metrics
from meshplane.citadel.nodeagent.cache import SecretCache
from meshplane.citadel.nodeagent.workloads import NoCredential, Workloads

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

#: a SotW or Delta DiscoveryRequest (Envoy's generated types are untyped for mypy)
Request: TypeAlias = Any


class CredentialSource(Protocol):
    """Named SDS resources served besides the workload's own (files, Kubernetes Secrets)."""

    @property
    def generation(self) -> int: ...

    def handles(self, name: str) -> bool: ...

    def get(self, name: str) -> tuple[secret_pb2.Secret, str] | None: ...

    async def wait_changed(self, seen: int) -> int: ...


async def _next_event(
    queue: asyncio.Queue[Request | None],
    cache: SecretCache,
    generation: int,
    sources: Sequence[CredentialSource],
    seen: Sequence[int],
) -> tuple[bool, Request | None]:
    """Wait for a request, a cache change or a credential source change; return (is_request, request)."""
    get = asyncio.create_task(queue.get())
    waits = {get, asyncio.create_task(cache.wait_changed(generation))}
    waits |= {asyncio.create_task(src.wait_changed(gen)) for src, gen in zip(sources, seen, strict=True)}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if get in done:
        return True, get.result()
    return False, None


def _stream_token(context: grpc.aio.ServicerContext) -> str | None:
    """The workload token Envoy sends in the SDS stream's initial metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


async def _pump(requests: AsyncIterator[Request], queue: asyncio.Queue[Request | None]) -> None:
    try:
        async for request in requests:
            await queue.put(request)
    finally:
        with contextlib.suppress(asyncio.QueueFull):  # never block here: we may be cancelled
            queue.put_nowait(None)


_Method = Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def _counted(method: _Method) -> _Method:
    """Count a streaming method's open streams in ``meshplane_nodeagent_sds_streams``."""

    @functools.wraps(method)
    async def wrapper(self: Any, requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with metrics.SDS_STREAMS.track_inprogress():
            async for response in method(self, requests, context):
                yield response

    return wrapper


class SecretDiscoveryServicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, workloads: Workloads, sources: Sequence[CredentialSource] = ()) -> None:
        self._workloads = workloads
        #: ``file-cert:``/``file-root:``, ``kubernetes://`` resources; a name none handles is not served
        self._sources = list(sources)

    def _lookup(self, cache: SecretCache, name: str) -> tuple[secret_pb2.Secret, str] | None:
        """A resource and its version, or None if unknown or not available yet."""
        for source in self._sources:
            if source.handles(name):
                return source.get(name)
        secret, version = cache.secret(name), cache.version(name)
        return None if secret is None or version is None else (secret, version)

    @contextlib.asynccontextmanager
    async def _workload(self, context: grpc.aio.ServicerContext) -> AsyncIterator[SecretCache]:
        """The cache of the workload this stream belongs to (by the token it presents)."""
        token = _stream_token(context)
        try:
            key, cache = await self._workloads.acquire(token)
        except NoCredential as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            yield cache
        finally:
            self._workloads.release(key)

    def _packed(self, cache: SecretCache, names: list[str]) -> tuple[list[any_pb2.Any], dict[str, str]]:
        resources: list[any_pb2.Any] = []
        versions: dict[str, str] = {}
        for name in names:
            found = self._lookup(cache, name)
            if found is None:
                continue
            secret, version = found
            packed = any_pb2.Any()
            packed.Pack(secret)
            resources.append(packed)
            versions[name] = version
        return resources, versions

    async def _events(
        self, cache: SecretCache, requests: AsyncIterator[Request]
    ) -> AsyncGenerator[Request | None, None]:
        """Yield each request from Envoy, and None whenever the cache changed; end with the stream.

        The generation is noted just before yielding, and callers build their response before
        their next await, so a change made after that build is never missed.
        """
        queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=8)
        reader = asyncio.create_task(_pump(requests, queue))
        seen = cache.generation
        sources_seen = [src.generation for src in self._sources]
        try:
            while True:
                is_request, request = await _next_event(queue, cache, seen, self._sources, sources_seen)
                if is_request and request is None:
                    return
                seen = cache.generation
                sources_seen = [src.generation for src in self._sources]
                yield request if is_request else None
        finally:
            reader.cancel()

    @_counted
    async def StreamSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        names: list[str] = []
        sent: dict[str, str] = {}
        nonce = ""
        async with (
            self._workload(context) as cache,
            contextlib.aclosing(self._events(cache, request_iterator)) as events,
        ):
            async for request in events:
                if cache.closed is not None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, cache.closed)
                if request is not None:
                    if request.error_detail.code:
                        log.warning("Envoy rejected secrets %s: %s", names, request.error_detail.message)
                    if request.response_nonce and request.response_nonce != nonce:
                        continue  # stale: a newer response is in flight
                    names = list(request.resource_names)
                    if not request.response_nonce:
                        sent = {}  # a fresh subscription gets everything
                resources, versions = self._packed(cache, names)
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

    @_counted
    async def DeltaSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        subscribed: set[str] = set()
        sent: dict[str, str] = {}
        async with (
            self._workload(context) as cache,
            contextlib.aclosing(self._events(cache, request_iterator)) as events,
        ):
            async for request in events:
                if cache.closed is not None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, cache.closed)
                if request is not None:
                    if request.error_detail.code:
                        log.warning("Envoy rejected secrets: %s", request.error_detail.message)
                    if not request.response_nonce:
                        sent.update(request.initial_resource_versions)
                    subscribed |= set(request.resource_names_subscribe)
                    subscribed -= set(request.resource_names_unsubscribe)
                resources = []
                for name in sorted(subscribed):
                    found = self._lookup(cache, name)
                    if found is None or sent.get(name) == found[1]:
                        continue
                    secret, version = found
                    packed = any_pb2.Any()
                    packed.Pack(secret)
                    resources.append(discovery_pb2.Resource(name=name, version=version, resource=packed))
                    sent[name] = version
                if resources:
                    yield discovery_pb2.DeltaDiscoveryResponse(
                        resources=resources, type_url=SECRET_TYPE, nonce=uuid.uuid4().hex
                    )

    async def FetchSecrets(
        self, request: discovery_pb2.DiscoveryRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.DiscoveryResponse:
        async with self._workload(context) as cache:
            resources, versions = self._packed(cache, list(request.resource_names))
        return discovery_pb2.DiscoveryResponse(
            version_info=",".join(f"{n}={v}" for n, v in sorted(versions.items())),
            resources=resources,
            type_url=SECRET_TYPE,
            nonce=uuid.uuid4().hex,
        )
