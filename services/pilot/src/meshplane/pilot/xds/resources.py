"""Build once, serve many: generated resources cached by (type, scope) and serialized once.

A proxy's scope key says which proxies get identical resources. CDS/LDS/RDS entries live until
the next full push; EDS entries are per cluster name, shared by every proxy, and dropped only
for the hosts whose endpoints changed.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshplane.pilot.generators import common
from meshplane.pilot.generators.clusters import own_clusters, shared_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.grpc import grpc_listeners, grpc_route
from meshplane.pilot.generators.listeners import inbound_listeners, outbound_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext


class Resource:
    """One resource, packed once; its wire encodings are computed once and shared by every proxy.

    ``sotw_wire`` / ``delta_wire`` are the bytes of this resource as one entry of the repeated
    ``resources`` field of a (Delta)DiscoveryResponse. Protobuf concatenation merges messages, so
    a response is the join of its resources' bytes plus a small header with version and nonce.
    """

    __slots__ = ("name", "any", "version", "message", "_sotw", "_delta")

    def __init__(self, name: str, packed: any_pb2.Any, version: str, message: Message) -> None:
        self.name = name
        self.any = packed
        self.version = version
        self.message = message
        self._sotw: bytes | None = None
        self._delta: bytes | None = None

    @property
    def sotw_wire(self) -> bytes:
        if self._sotw is None:
            self._sotw = discovery_pb2.DiscoveryResponse(resources=[self.any]).SerializeToString()
        return self._sotw

    @property
    def delta_wire(self) -> bytes:
        if self._delta is None:
            resp = discovery_pb2.DeltaDiscoveryResponse()
            resp.resources.add(name=self.name, version=self.version, resource=self.any)
            self._delta = resp.SerializeToString()
        return self._delta


def _resource(name: str, msg: Message) -> Resource:
    packed = any_pb2.Any()
    packed.Pack(msg, deterministic=True)
    version = hashlib.blake2b(packed.value, digest_size=8).hexdigest()
    return Resource(name, packed, version, msg)


Resources = dict[str, Resource]


def _named(messages: Sequence[Any]) -> Resources:
    return {m.name: _resource(m.name, m) for m in messages}


def _one_route(ctx: PushContext, proxy: Proxy, name: str) -> Resources:
    return {name: _resource(name, build_route(ctx, proxy, name))}


class ResourceCache:
    """Generated resources for the current push context; safe to share across connections."""

    def __init__(self) -> None:
        self._scoped: dict[tuple[str, str], Resources] = {}
        self._eds: dict[str, Resource] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._scoped.clear()
        self._eds.clear()

    def clear_eds(self, hosts: frozenset[str]) -> None:
        for name in [n for n in self._eds if n.rsplit("|", 1)[-1] in hosts]:
            del self._eds[name]

    def _scoped_get(self, type_url: str, key: str, build: Callable[[], Resources]) -> Resources:
        found = self._scoped.get((type_url, key))
        if found is None:
            self.misses += 1
            found = build()
            self._scoped[(type_url, key)] = found
        else:
            self.hits += 1
        return found

    def generate(
        self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None
    ) -> Resources:
        """Resources of ``type_url`` for ``proxy``; ``names`` limits EDS and RDS (None = all)."""
        if proxy.generator == "grpc":
            return self._generate_grpc(ctx, proxy, type_url, names)
        scope = proxy.scope_key()
        own_key = f"{scope}|{proxy.ip}|{','.join(proxy.instance_ips)}"
        if type_url == common.CLUSTER:
            shared = self._scoped_get("cds", scope, lambda: _named(shared_clusters(ctx, proxy)))
            own = self._scoped_get("cds-own", own_key, lambda: _named(own_clusters(ctx, proxy)))
            return {**shared, **own} if own else shared
        if type_url == common.LISTENER:
            key = f"{scope}|{proxy.ip}" if proxy.interception_none else scope
            shared = self._scoped_get("lds", key, lambda: _named(outbound_listeners(ctx, proxy)))
            own = self._scoped_get("lds-own", own_key, lambda: _named(inbound_listeners(ctx, proxy)))
            return {**shared, **own} if own else shared
        if type_url == common.ROUTE:
            out: Resources = {}
            for name in sorted(names or ()):
                key = f"{proxy.scope_key()}|{name}"
                got = self._scoped_get(type_url, key, functools.partial(_one_route, ctx, proxy, name))
                out.update(got)
            return out
        if type_url == common.ENDPOINT:
            eds: Resources = {}
            for name in sorted(names or ()):
                res = self._eds.get(name)
                if res is None:
                    self.misses += 1
                    res = _resource(name, build_load_assignment(ctx, name))
                    self._eds[name] = res
                else:
                    self.hits += 1
                eds[name] = res
            return eds
        return {}

    def _generate_grpc(
        self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None
    ) -> Resources:
        """Proxyless gRPC: everything by name; clusters and endpoints shared with Envoy proxies."""
        wanted = names or frozenset()
        if type_url == common.LISTENER:
            return _named(grpc_listeners(ctx, proxy, wanted))
        if type_url == common.ROUTE:
            return {n: _resource(n, grpc_route(ctx, proxy, n)) for n in sorted(wanted)}
        if type_url == common.CLUSTER:
            shared = self._scoped_get("cds", proxy.scope_key(), lambda: _named(shared_clusters(ctx, proxy)))
            return shared if names is None else {n: shared[n] for n in sorted(wanted) if n in shared}
        return self.generate(ctx, replace(proxy, generator=""), type_url, names)
