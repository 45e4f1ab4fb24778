"""The xDS generator interface and the registry that finds a generator by type URL.

As Istio's ``XdsResourceGenerator`` / ``findGenerator``: one generator per xDS type declares
everything the transport, status and debug pages need to know about that type (its type URL,
short name, whether a request naming nothing means "everything", its place in a push, which
changes concern it, and how its resources are cached). Transport code asks the registry, never
a list of its own, so adding a type is one generator module plus one ``register`` call.

A proxy with node metadata ``GENERATOR`` (proxyless gRPC: ``grpc``) may get a variant of a type
(``flavor``/type URL, checked before the type URL alone, as Istio's ``findGenerator``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.model.resources import Part, Parts, Resource, Resources

T = TypeVar("T")


class GeneratorCache(Protocol):
    """What a generator may keep for the current push context (the transport's resource cache).

    Keys are chosen by each generator (start them with its short name so types never collide).
    ``part``, ``resources`` and ``memo`` entries live until the next full push;
    ``endpoint_memo`` entries until the next push of any kind; ``endpoint_resources`` entries
    (keyed by cluster name ``outbound|port|subset|host`` and a variant) until an endpoint push
    names their host.
    """

    endpoint_resources: dict[tuple[str, str | None], Resource]

    def part(self, key: Hashable, build: Callable[[], Resources]) -> Part:
        """The shared part for ``key``, built once (counted as a cache hit or miss)."""
        ...

    def resources(self, key: Hashable, build: Callable[[], Resources]) -> Resources:
        """Resources for ``key``, built once (counted as a cache hit or miss)."""
        ...

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """Any value for ``key``, built once per push context (not counted)."""
        ...

    def endpoint_memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """Any value for ``key``, built again after every push (not counted)."""
        ...

    def count(self, hit: bool) -> None:
        """Record a cache hit or miss of the generator's own lookups."""
        ...


@dataclass(frozen=True)
class ConfigDump:
    """Where a type's resources go in an Envoy-style ``/config_dump``: its place among the dumps
    (Envoy's order: clusters, listeners, routes, endpoints), the ``*ConfigDump`` message, its
    list field, and the field of each entry that holds the resource."""

    order: int
    dump_type: str
    list_key: str
    item_key: str


class XdsGenerator(ABC):
    """One xDS type: its facts (class attributes) and how its resources are built."""

    #: ``type.googleapis.com/...`` of the resources.
    type_url: str
    #: Metric label and log name: ``cds``, ``eds``, ``lds``, ``rds``, ...
    short: str
    #: Column prefix in ``/debug/syncz`` rows: ``cluster``, ``endpoint``, ...
    debug_name: str
    #: Place in a push (lower first): CDS before EDS, LDS before RDS, as Istio does.
    push_order: int
    #: A first request naming no resources subscribes to all of them (CDS, LDS).
    wildcard: bool = False
    #: Also sent on endpoint-only pushes, only for the hosts whose endpoints changed; resource
    #: names end in ``|host`` (EDS).
    endpoint_driven: bool = False
    #: Delta: re-send the resources of this type named like those just sent of ``resend_with``
    #: in the same push, whatever their version (Envoy warms a re-sent cluster until its EDS
    #: arrives).
    resend_with: str = ""
    #: Config kinds whose change concerns this type (besides any registry change).
    kinds: frozenset[str] = frozenset()
    #: Shape in ``/debug/config_dump``; None leaves the type out.
    dump: ConfigDump | None = None

    def needs_push(self, req: PushRequest) -> bool:
        """Whether a full push for ``req`` concerns this type (Istio's ``cdsNeedsPush`` & co): the
        registry changed, the MeshConfig (every type, as Istio's forced push), or a config of one of
        its ``kinds``."""
        return req.services_changed or "MeshConfig" in req.kinds or not self.kinds.isdisjoint(req.kinds)

    @abstractmethod
    def parts(
        self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
    ) -> Parts:
        """The proxy's resources of this type as shared parts, always the same number of parts for
        one type (``names``: what the proxy subscribed to; None for a wildcard subscription)."""


#: Builds a proxy's resources of one type: (cache, push context, proxy, subscribed names or None).
BuildFn = Callable[[GeneratorCache, PushContext, Proxy, frozenset[str] | None], Resources]


@dataclass(frozen=True)
class FlavorGenerator:
    """A variant of a registered type for proxies whose ``GENERATOR`` metadata is ``flavor``;
    its resources are the proxy's own (not shared parts)."""

    flavor: str
    type_url: str
    resources: BuildFn


#: What every generator declares (the others have defaults in ``XdsGenerator``).
_REQUIRED = ("type_url", "short", "debug_name", "push_order")


class UnknownType(KeyError):
    """A type URL no generator is registered for."""


class Registry:
    """Generators by type URL, in push order; variants by (flavor, type URL)."""

    def __init__(self) -> None:
        self._types: dict[str, XdsGenerator] = {}
        self._flavors: dict[tuple[str, str], FlavorGenerator] = {}
        #: Every generator in push order (rebuilt on registration, read on every push).
        self.ordered: tuple[XdsGenerator, ...] = ()

    def register(self, gen: XdsGenerator | FlavorGenerator) -> None:
        if isinstance(gen, FlavorGenerator):
            if gen.type_url not in self._types:
                raise ValueError(f"register the {gen.type_url} generator before its {gen.flavor} variant")
            self._flavors[(gen.flavor, gen.type_url)] = gen
            return
        missing = [a for a in _REQUIRED if not hasattr(gen, a)]
        if missing:
            raise TypeError(f"{type(gen).__name__} does not declare {', '.join(missing)}")
        if gen.type_url in self._types:
            raise ValueError(f"a generator for {gen.type_url} is already registered")
        if any(g.short == gen.short for g in self._types.values()):
            raise ValueError(f"another type is already registered as {gen.short!r}")
        self._types[gen.type_url] = gen
        self.ordered = tuple(sorted(self._types.values(), key=lambda g: g.push_order))

    def unregister(self, type_url: str) -> None:
        """Remove the generator of ``type_url`` and its variants."""
        self._types.pop(type_url, None)
        self._flavors = {k: v for k, v in self._flavors.items() if k[1] != type_url}
        self.ordered = tuple(g for g in self.ordered if g.type_url != type_url)

    @contextlib.contextmanager
    def registered(self, gen: XdsGenerator) -> Iterator[XdsGenerator]:
        """``gen`` registered for the duration of the block."""
        self.register(gen)
        try:
            yield gen
        finally:
            self.unregister(gen.type_url)

    def get(self, type_url: str) -> XdsGenerator | None:
        return self._types.get(type_url)

    def __getitem__(self, type_url: str) -> XdsGenerator:
        try:
            return self._types[type_url]
        except KeyError:
            raise UnknownType(type_url) from None

    def __contains__(self, type_url: object) -> bool:
        return type_url in self._types

    def parts(
        self,
        cache: GeneratorCache,
        ctx: PushContext,
        proxy: Proxy,
        type_url: str,
        names: frozenset[str] | None,
    ) -> Parts:
        """What ``proxy`` gets of ``type_url``: its flavor's variant if one is registered, else
        the type's generator."""
        if proxy.generator:
            variant = self._flavors.get((proxy.generator, type_url))
            if variant is not None:
                return (Part(variant.resources(cache, ctx, proxy, names)),)
        gen = self._types.get(type_url)
        if gen is None:
            raise UnknownType(type_url)
        return gen.parts(cache, ctx, proxy, names)
