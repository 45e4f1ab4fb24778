"""Generated resources as generators hand them to the transport: packed once, shared by parts.

A proxy's resources of one type are a fixed tuple of parts (say, the clusters of its
scope and its own inbound clusters). Parts are built once per push context and carry their
wire forms and subsets, so a push does per-proxy work only for what is per proxy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message


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


def make_resource(name: str, msg: Message) -> Resource:
    """``msg`` packed deterministically, versioned by a hash of its bytes."""
    packed = any_pb2.Any()
    packed.Pack(msg, deterministic=True)
    version = hashlib.blake2b(packed.value, digest_size=8).hexdigest()
    return Resource(name, packed, version, msg)


Resources = dict[str, Resource]


def named(messages: Sequence[Any]) -> Resources:
    """Messages with a ``name`` field, keyed by it."""
    return {m.name: make_resource(m.name, m) for m in messages}


class Part:
    """An immutable group of resources shared by every proxy that gets the same ones."""

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

Parts = tuple[Part, ...]


def scope_and_own(shared: Part, own: Part) -> Parts:
    """A proxy's own resources replace shared ones of the same name (a bound listener, say)."""
    if own.items and not shared.items.keys().isdisjoint(own.items):
        shared = shared.without(frozenset(own.items))
    return (shared, own)


def merged(parts: Parts) -> Resources:
    if len(parts) == 1:
        return parts[0].items
    out: Resources = {}
    for part in parts:
        out.update(part.items)
    return out
