"""Wildcard types made of what a proxy's scope shares plus what is the proxy's own (CDS, LDS)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from meshplane.pilot.generators import envoyfilter
from meshplane.pilot.model.generator import GeneratorCache, XdsGenerator
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.resources import Part, Parts, named, scope_and_own


class ScopeAndOwnGenerator(XdsGenerator):
    """Resources of the proxy's scope, built once per ``scope_key`` and shared by every proxy with
    that key, plus the proxy's own (inbound) ones, built once per ``Proxy.own_key``; an own
    resource replaces a shared one of the same name."""

    wildcard = True

    def scope_key(self, proxy: Proxy) -> str:
        """Proxies with equal keys get the same shared resources."""
        return proxy.scope_key()

    @abstractmethod
    def shared(self, ctx: PushContext, proxy: Proxy) -> Sequence[Any]:
        """The resources every proxy of the scope gets (named messages)."""

    @abstractmethod
    def own(self, ctx: PushContext, proxy: Proxy) -> Sequence[Any]:
        """The proxy's own resources (named messages)."""

    def shared_part(self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy) -> Part:
        key = (self.short, self.scope_key(proxy), envoyfilter.variant(ctx, proxy))
        return cache.part(key, lambda: named(self.shared(ctx, proxy)))

    def parts(
        self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
    ) -> Parts:
        key = (self.short, "own", proxy.own_key, envoyfilter.variant(ctx, proxy))
        own = cache.part(key, lambda: named(self.own(ctx, proxy)))
        return scope_and_own(self.shared_part(cache, ctx, proxy), own)
