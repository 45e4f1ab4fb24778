"""RDS: route configurations by name, each built once per scope and shared."""

from __future__ import annotations

import functools

from meshplane.pilot.generators import common, envoyfilter, routes
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.generator import ConfigDump, GeneratorCache, XdsGenerator
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.resources import Part, Parts, Resources, make_resource


class RouteGenerator(XdsGenerator):
    type_url = common.ROUTE
    short = "rds"
    debug_name = "route"
    push_order = 40
    kinds = routes.KINDS | envoyfilter.KINDS
    dump = ConfigDump(3, "RoutesConfigDump", "dynamic_route_configs", "route_config")

    def parts(
        self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
    ) -> Parts:
        scope = (proxy.scope_key(), envoyfilter.variant(ctx, proxy))
        wanted = names or frozenset()

        def one(name: str) -> Resources:
            return {
                name: make_resource(name, envoyfilter.patch_routes(ctx, proxy, build_route(ctx, proxy, name)))
            }

        def build() -> Part:
            out: Resources = {}
            for name in sorted(wanted):
                out.update(cache.resources(("rds", scope, name), functools.partial(one, name)))
            return Part(out)

        return (cache.memo(("rds", scope, wanted), build),)
