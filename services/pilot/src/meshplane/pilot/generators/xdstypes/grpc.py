"""Proxyless gRPC variants (node metadata ``GENERATOR: grpc``): everything by name.

Listeners and routes are gRPC's own; clusters are the Envoy proxies' shared outbound clusters,
picked by name; endpoints need no variant (the EDS generator serves both).
"""

from __future__ import annotations

from meshplane.pilot.generators import common
from meshplane.pilot.generators.grpc import grpc_listeners, grpc_route
from meshplane.pilot.generators.xdstypes.cds import ClusterGenerator
from meshplane.pilot.model.generator import FlavorGenerator, GeneratorCache
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.resources import Resources, make_resource, named

FLAVOR = "grpc"
_CDS = ClusterGenerator()  # stateless: the same shared-part keys as the registered one


def _listeners(_: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None) -> Resources:
    return named(grpc_listeners(ctx, proxy, names or frozenset()))


def _routes(_: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None) -> Resources:
    return {n: make_resource(n, grpc_route(ctx, proxy, n)) for n in sorted(names or ())}


def _clusters(
    cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
) -> Resources:
    shared = _CDS.shared_part(cache, ctx, proxy).items
    return shared if names is None else {n: shared[n] for n in sorted(names) if n in shared}


LISTENERS = FlavorGenerator(FLAVOR, common.LISTENER, _listeners)
ROUTES = FlavorGenerator(FLAVOR, common.ROUTE, _routes)
CLUSTERS = FlavorGenerator(FLAVOR, common.CLUSTER, _clusters)
