"""Build once, serve many: generated resources cached by (type, scope) and serialized once.

A proxy's scope key says which proxies get identical resources. CDS/LDS/RDS entries live until
the next full push; EDS entries are per cluster name, shared by every proxy, and dropped only
for the hosts whose endpoints changed.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshplane.pilot.generators import common
from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext


@dataclass(frozen=True, slots=True)
class Resource:
    """One serialized resource: the Any sent on the wire and its content version."""

    name: str
    any: any_pb2.Any
    version: str
    message: Message


def _resource(name: str, msg: Message) -> Resource:
    packed = any_pb2.Any()
    packed.Pack(msg, deterministic=True)
    version = hashlib.blake2b(packed.value, digest_size=8).hexdigest()
    return Resource(name, packed, version, msg)


Resources = dict[str, Resource]


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
        ips = ",".join(proxy.instance_ips)
        if type_url == common.CLUSTER:
            key = f"{proxy.scope_key()}|{ips}"
            return self._scoped_get(
                type_url, key, lambda: {c.name: _resource(c.name, c) for c in build_clusters(ctx, proxy)}
            )
        if type_url == common.LISTENER:
            key = f"{proxy.scope_key()}|{proxy.ip}|{ips}"
            return self._scoped_get(
                type_url, key, lambda: {x.name: _resource(x.name, x) for x in build_listeners(ctx, proxy)}
            )
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
