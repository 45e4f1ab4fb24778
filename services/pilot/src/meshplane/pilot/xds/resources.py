"""Build once, serve many: generated resources cached by (type, scope) and serialized once.

A proxy's scope key says which proxies get identical resources. CDS/LDS/RDS entries live until
the next full push; EDS entries are per cluster name, shared by every proxy, and dropped only
for the hosts whose endpoints changed. A cluster with locality load balancing has one EDS entry
per (cluster name, proxy locality) instead, and EDS parts are keyed by the proxy locality too
(and by the proxy's values of the labels a ``failoverPriority`` compares, when any does).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
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
from meshplane.pilot.generators.locality import (
    apply_label_priorities,
    apply_locality,
    failover_label_keys,
    label_priority,
    locality_setting,
)
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


class Part:
    """An immutable group of resources shared by every proxy that gets the same ones.

    A proxy's resources of one type are a fixed tuple of parts (say, the clusters of its scope
    and its own inbound clusters). Parts are built once per push context and carry their wire
    forms, subsets and differences, so a push does per-proxy work only for what is per proxy.
    """

    __slots__ = ("items", "_sotw", "_only", "_without")

    def __init__(self, items: Resources) -> None:
        self.items = items
        self._sotw: bytes | None = None
        self._only: dict[frozenset[str], Part] = {}
        self._without: dict[frozenset[str], Part] = {}

    @property
    def sotw_body(self) -> bytes:
        """The ``resources`` entries of a DiscoveryResponse carrying every item."""
        if self._sotw is None:
            self._sotw = b"".join(r.sotw_wire for r in self.items.values())
        return self._sotw

    def only(self, hosts: frozenset[str]) -> Part:
        """The items whose name ends in one of ``hosts`` (``outbound|port|subset|host``)."""
        found = self._only.get(hosts)
        if found is None:
            found = Part({n: r for n, r in self.items.items() if n.rsplit("|", 1)[-1] in hosts})
            self._only[hosts] = found
        return found

    def without(self, names: frozenset[str]) -> Part:
        """The items not named in ``names``."""
        found = self._without.get(names)
        if found is None:
            found = self._without[names] = Part({n: r for n, r in self.items.items() if n not in names})
        return found


EMPTY = Part({})


def _scope_and_own(shared: Part, own: Part) -> Parts:
    """A proxy's own resources replace shared ones of the same name (a bound listener, say)."""
    if own.items and not shared.items.keys().isdisjoint(own.items):
        shared = shared.without(frozenset(own.items))
    return (shared, own)


Parts = tuple[Part, ...]


class Diff:
    """What a Delta response carries to move a proxy from one set of parts to another."""

    __slots__ = ("changed", "names", "removed", "body")

    def __init__(self, changed: list[Resource], removed: list[str]) -> None:
        self.changed = changed
        self.names = frozenset(r.name for r in changed)
        self.removed = removed
        self.body = b"".join(r.delta_wire for r in changed)


def _version(held: Resource | str) -> str:
    return held if isinstance(held, str) else held.version


def diff(
    have: Mapping[str, Resource | str], new: Resources, wildcard: bool, force: frozenset[str] = frozenset()
) -> Diff:
    """Items of ``new`` that ``have`` lacks or holds at another version, or that are in ``force``;
    with ``wildcard``, also the names ``have`` holds that ``new`` no longer has (a Delta removal)."""
    changed = [
        r for n, r in new.items() if (h := have.get(n)) is None or _version(h) != r.version or n in force
    ]
    removed = [n for n in have if n not in new] if wildcard else []
    return Diff(changed, removed)


def merged(parts: Parts) -> Resources:
    if len(parts) == 1:
        return parts[0].items
    out: Resources = {}
    for part in parts:
        out.update(part.items)
    return out


def _named(messages: Sequence[Any]) -> Resources:
    return {m.name: _resource(m.name, m) for m in messages}


def _one_route(ctx: PushContext, proxy: Proxy, name: str) -> Resources:
    return {name: _resource(name, build_route(ctx, proxy, name))}


class ResourceCache:
    """Generated resources for the current push context; safe to share across connections."""

    def __init__(self) -> None:
        self._scoped: dict[tuple[str, str], Resources] = {}
        self._parts: dict[tuple[str, str], Part] = {}
        #: EDS entries by (cluster name, None) when shared, (cluster name, proxy's load-balancing
        #: identity) when the cluster uses locality load balancing; one cluster has one kind.
        self._eds: dict[tuple[str, str | None], Resource] = {}
        self._eds_parts: dict[tuple[frozenset[str], str], Part] = {}
        self._route_parts: dict[tuple[str, frozenset[str]], Part] = {}
        #: label names some failoverPriority compares (None: not yet looked up in this push context)
        self._failover_keys: tuple[str, ...] | None = None
        self._diffs: dict[tuple[Part, Part, bool, frozenset[str]], Diff] = {}
        self._responses: dict[tuple[object, ...], tuple[str, bytes]] = {}
        #: Nonces are unique for the life of the process; a shared response has one nonce for
        #: every stream it goes to (identical content, so an answer to it means the same).
        self._nonces = itertools.count(1)
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._failover_keys = None
        self._scoped.clear()
        self._parts.clear()
        self._eds.clear()
        self._eds_parts.clear()
        self._route_parts.clear()
        self._diffs.clear()
        self._responses.clear()

    def clear_eds(self, hosts: frozenset[str]) -> None:
        for key in [k for k in self._eds if k[0].rsplit("|", 1)[-1] in hosts]:
            del self._eds[key]
        self._eds_parts.clear()
        self._diffs.clear()
        self._responses.clear()

    def next_nonce(self) -> str:
        return f"{next(self._nonces)}"

    def response(self, key: tuple[object, ...], build: Callable[[str], bytes]) -> tuple[str, bytes]:
        """The serialized response for ``key`` (parts or diffs, type and version), built once with
        a fresh nonce and then sent as the same bytes to every proxy it fits."""
        found = self._responses.get(key)
        if found is None:
            nonce = self.next_nonce()
            found = self._responses[key] = (nonce, build(nonce))
        return found

    def diff(self, have: Part, new: Part, wildcard: bool, force: frozenset[str] = frozenset()) -> Diff:
        """``diff`` between two shared parts, computed once for every proxy making that move."""
        key = (have, new, wildcard, force)
        found = self._diffs.get(key)
        if found is None:
            found = self._diffs[key] = diff(have.items, new.items, wildcard, force)
        return found

    def _scoped_get(self, type_url: str, key: str, build: Callable[[], Resources]) -> Resources:
        found = self._scoped.get((type_url, key))
        if found is None:
            self.misses += 1
            found = build()
            self._scoped[(type_url, key)] = found
        else:
            self.hits += 1
        return found

    def _part(self, type_url: str, key: str, build: Callable[[], Resources]) -> Part:
        found = self._parts.get((type_url, key))
        if found is None:
            self.misses += 1
            items = build()
            found = Part(items) if items else EMPTY
            self._parts[(type_url, key)] = found
        else:
            self.hits += 1
        return found

    def generate(
        self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None
    ) -> Resources:
        """Resources of ``type_url`` for ``proxy``; ``names`` limits EDS and RDS (None = all)."""
        if proxy.generator == "grpc":
            return self._generate_grpc(ctx, proxy, type_url, names)
        return merged(self.parts(ctx, proxy, type_url, names))

    def parts(self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None) -> Parts:
        """Like ``generate``, as shared parts (always the same number for one type)."""
        if proxy.generator == "grpc":
            return (Part(self._generate_grpc(ctx, proxy, type_url, names)),)
        scope = proxy.scope_key()
        own_key = proxy.own_key
        if type_url == common.CLUSTER:
            return _scope_and_own(
                self._part("cds", scope, lambda: _named(shared_clusters(ctx, proxy))),
                self._part("cds-own", own_key, lambda: _named(own_clusters(ctx, proxy))),
            )
        if type_url == common.LISTENER:
            key = f"{scope}|{proxy.ip}" if proxy.interception_none else scope
            return _scope_and_own(
                self._part("lds", key, lambda: _named(outbound_listeners(ctx, proxy))),
                self._part("lds-own", own_key, lambda: _named(inbound_listeners(ctx, proxy))),
            )
        wanted = names or frozenset()
        if type_url == common.ROUTE:
            route_part = self._route_parts.get((scope, wanted))
            if route_part is None:
                out: Resources = {}
                for name in sorted(wanted):
                    build = functools.partial(_one_route, ctx, proxy, name)
                    out.update(self._scoped_get(type_url, f"{scope}|{name}", build))
                route_part = self._route_parts[(scope, wanted)] = Part(out)
            return (route_part,)
        if type_url == common.ENDPOINT:
            lb_id = self._lb_identity(ctx, proxy)
            eds_part = self._eds_parts.get((wanted, lb_id))
            if eds_part is None:
                eds = {name: self._endpoints(ctx, name, proxy, lb_id) for name in sorted(wanted)}
                eds_part = self._eds_parts[(wanted, lb_id)] = Part(eds)
            return (eds_part,)
        return (EMPTY,)

    def _lb_identity(self, ctx: PushContext, proxy: Proxy) -> str:
        """What locality load balancing sees of a proxy: its locality, and its values of the
        labels some ``failoverPriority`` compares (usually none, so proxies keep sharing)."""
        if self._failover_keys is None:
            self._failover_keys = failover_label_keys(ctx)
        if not self._failover_keys:
            return proxy.locality
        return "\x1f".join([proxy.locality, *(proxy.labels.get(k, "") for k in self._failover_keys)])

    def _endpoints(self, ctx: PushContext, name: str, proxy: Proxy, lb_id: str) -> Resource:
        """The CLA of ``name``: shared, or for this proxy's load-balancing identity when the
        cluster uses locality load balancing."""
        res = self._eds.get((name, None)) or self._eds.get((name, lb_id))
        if res is not None:
            self.hits += 1
            return res
        self.misses += 1
        setting = locality_setting(ctx, name)
        if setting is None:
            res = self._eds[(name, None)] = _resource(name, build_load_assignment(ctx, name))
            return res
        rank = None if setting.get("distribute") else label_priority(setting, proxy.labels, proxy.locality)
        if rank is not None:
            cla = build_load_assignment(ctx, name, rank)
            apply_label_priorities(cla, proxy.locality, setting)
        else:
            cla = build_load_assignment(ctx, name)
            apply_locality(cla, proxy.locality, setting)
        res = self._eds[(name, lb_id)] = _resource(name, cla)
        return res

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
            shared = self._part("cds", proxy.scope_key(), lambda: _named(shared_clusters(ctx, proxy))).items
            return shared if names is None else {n: shared[n] for n in sorted(wanted) if n in shared}
        return self.generate(ctx, replace(proxy, generator=""), type_url, names)
