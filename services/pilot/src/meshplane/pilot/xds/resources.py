"""Build once, serve many: generated resources cached per push context and serialized once.

Generators (see :mod:`meshplane.pilot.model.generator`) choose how their resources are keyed:
by a proxy's scope key (which proxies get identical resources), its own key, a subscription's
names, ... Entries live until the next full push; EDS entries are per cluster name, shared by
every proxy, and dropped only for the hosts whose endpoints changed. Responses and Delta
differences between shared parts are cached here too, so a push to thousands of proxies
serializes each distinct response once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

from meshplane.pilot.generators.common import ClusterKey
from meshplane.pilot.generators.registry import REGISTRY
from meshplane.pilot.model.generator import Registry
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.resources import EMPTY, Part, Parts, Resource, Resources, merged

T = TypeVar("T")
_MISSING = object()


class Diff:
    """What a Delta response carries to move a proxy from one set of parts to another."""

    __slots__ = ("changed", "names", "removed", "body")

    def __init__(self, changed: list[Resource], removed: list[str]) -> None:
        self.changed = changed
        self.names = frozenset(r.name for r in changed)
        self.removed = removed
        self.body = b"".join(r.delta_wire for r in changed)


def _host_of(cluster_name: str) -> str:
    """The host of ``outbound|port|subset|host`` or of its SNI form (a gateway's SNI-DNAT cluster)."""
    key = ClusterKey.parse(cluster_name) or ClusterKey.parse_sni(cluster_name)
    return key.host if key else cluster_name


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


class ResourceCache:
    """Generated resources for the current push context; safe to share across connections.

    Implements :class:`~meshplane.pilot.model.generator.GeneratorCache` for the generators of
    ``registry``.
    """

    def __init__(self, registry: Registry = REGISTRY) -> None:
        self.registry = registry
        self._resources: dict[Hashable, Resources] = {}
        self._parts: dict[Hashable, Part] = {}
        self._memo: dict[Hashable, object] = {}
        self._endpoint_memo: dict[Hashable, object] = {}
        #: EDS entries by (cluster name, None) when shared, (cluster name, proxy's load-balancing
        #: identity) when the cluster uses locality load balancing; one cluster has one kind.
        self.endpoint_resources: dict[tuple[str, str | None], Resource] = {}
        self._diffs: dict[tuple[Part, Part, bool, frozenset[str]], Diff] = {}
        self._responses: dict[tuple[object, ...], tuple[str, bytes]] = {}
        #: Nonces are unique for the life of the process; a shared response has one nonce for
        #: every stream it goes to (identical content, so an answer to it means the same).
        self._nonces = itertools.count(1)
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._resources.clear()
        self._parts.clear()
        self._memo.clear()
        self._endpoint_memo.clear()
        self.endpoint_resources.clear()
        self._diffs.clear()
        self._responses.clear()

    def clear_eds(self, hosts: frozenset[str]) -> None:
        """After an endpoint push for ``hosts``: drop what depends on their endpoints."""
        for key in [k for k in self.endpoint_resources if _host_of(k[0]) in hosts]:
            del self.endpoint_resources[key]
        self._endpoint_memo.clear()
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

    # ---- GeneratorCache ------------------------------------------------------------------
    def count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def resources(self, key: Hashable, build: Callable[[], Resources]) -> Resources:
        found = self._resources.get(key)
        if found is None:
            self.misses += 1
            found = self._resources[key] = build()
        else:
            self.hits += 1
        return found

    def part(self, key: Hashable, build: Callable[[], Resources]) -> Part:
        found = self._parts.get(key)
        if found is None:
            self.misses += 1
            items = build()
            found = self._parts[key] = Part(items) if items else EMPTY
        else:
            self.hits += 1
        return found

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            found = self._memo[key] = build()
        return found  # type: ignore[return-value]  # stored by this key's own builder

    def endpoint_memo(self, key: Hashable, build: Callable[[], T]) -> T:
        found = self._endpoint_memo.get(key, _MISSING)
        if found is _MISSING:
            found = self._endpoint_memo[key] = build()
        return found  # type: ignore[return-value]  # stored by this key's own builder

    # ---- what proxies get ------------------------------------------------------------------
    def generate(
        self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None
    ) -> Resources:
        """Resources of ``type_url`` for ``proxy``; ``names`` limits non-wildcard types (None = all)."""
        return merged(self.parts(ctx, proxy, type_url, names))

    def parts(self, ctx: PushContext, proxy: Proxy, type_url: str, names: frozenset[str] | None) -> Parts:
        """Like ``generate``, as shared parts (always the same number for one type)."""
        return self.registry.parts(self, ctx, proxy, type_url, names)
