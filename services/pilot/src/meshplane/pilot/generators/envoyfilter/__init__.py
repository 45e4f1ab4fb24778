"""EnvoyFilter patches applied to a proxy's generated listeners, clusters and routes, as Istio
applies them.

The patch stage runs on each generated part before it is packed, so the packed resources, their
versions and the transport's caches all see the patched config. The selection depends on what a
part is keyed by (namespace, labels, proxy type) plus :func:`variant` (which ``match.proxy``
patches match the proxy), which the generators add to their cache keys.

Applied (``APPLIED`` in the validation rules lists the operations): every ``applyTo`` but
``EXTENSION_CONFIG`` (meshplane serves no ECDS) and ``BOOTSTRAP`` (deprecated; Istio does not
apply it either), which the validator warns about. Contexts: a sidecar's outbound listeners,
clusters and route configurations are ``SIDECAR_OUTBOUND``, its inbound ones (and the route
configurations inline in inbound listeners) ``SIDECAR_INBOUND``; everything of a gateway is
``GATEWAY``. Route patches run before listener patches, as Istio builds routes first.

A patch value that does not convert to its Envoy type, a patch that raises, or one whose result
Envoy would reject (:mod:`.rules`) is skipped for that part, logged and counted in
``pilot_envoy_filter_status{result="error"}``; the generated objects are kept as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshplane.pilot.generators.envoyfilter import cluster, listener, ops, route
from meshplane.pilot.generators.envoyfilter.rules import HCM
from meshplane.pilot.generators.envoyfilter.select import (
    Compiled,
    compiled,
    context_ok,
    listener_context,
    selected,
    variant,
)
from meshplane.pilot.generators.envoyfilter.status import STATUS, FilterStatus
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models.envoy_filter import ApplyTo
from meshplane.shared.config.models.envoy_filter import PatchContext as Ctx

__all__ = [
    "KINDS",
    "STATUS",
    "Compiled",
    "FilterStatus",
    "patch_clusters",
    "patch_listeners",
    "patch_routes",
    "selected",
    "variant",
]

#: Kinds whose change re-generates what this stage patches.
KINDS = frozenset({"EnvoyFilter"})


def _patches(ctx: PushContext, proxy: Proxy, kinds: frozenset[ApplyTo], context: Ctx) -> list[Compiled]:
    return [p for p in compiled(ctx, proxy, kinds) if context_ok(p, context)]


def _adds_here(patch: Compiled, inbound: bool) -> bool:
    """Whether an ADD of a whole listener or cluster runs in this pass: a patch for any context
    adds in the outbound (and gateway) pass only, so it is added once."""
    return not inbound or patch.context == Ctx.SIDECAR_INBOUND


def patch_listeners(
    ctx: PushContext, proxy: Proxy, listeners: Sequence[listener_pb2.Listener], inbound: bool
) -> list[listener_pb2.Listener]:
    """``listeners`` (one part: inbound or outbound) after the proxy's EnvoyFilter patches."""
    context = listener_context(proxy, inbound)
    patches = _patches(ctx, proxy, listener.KINDS, context)
    routes = _patches(ctx, proxy, route.KINDS, context) if inbound else []
    if not patches and not routes:
        return list(listeners)
    out = [ops.copy(x) for x in listeners]
    if routes:
        out = [_patch_inline_routes(ctx, routes, lis) for lis in out]
    return ops.run(
        ctx.version,
        patches,
        out,
        lambda p, o: listener.apply(p, o, add_here=_adds_here(p, inbound)),
        listener.problems,
    )


def _patch_inline_routes(
    ctx: PushContext, patches: list[Compiled], lis: listener_pb2.Listener
) -> listener_pb2.Listener:
    """The route configurations inline in an inbound listener's HTTP connection managers, patched
    in the ``SIDECAR_INBOUND`` context."""
    for chain in lis.filter_chains:
        for flt in chain.filters:
            if flt.name != HCM or not flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                continue
            mgr = hcm_pb2.HttpConnectionManager()
            flt.typed_config.Unpack(mgr)
            if not mgr.HasField("route_config"):
                continue
            patched = ops.run(
                ctx.version, patches, [mgr.route_config], route.apply_for(Ctx.SIDECAR_INBOUND), route.problems
            )
            mgr.route_config.CopyFrom(patched[0])
            flt.typed_config.Pack(mgr, deterministic=True)
    return lis


def patch_clusters(
    ctx: PushContext, proxy: Proxy, clusters: Sequence[cluster_pb2.Cluster], inbound: bool
) -> list[cluster_pb2.Cluster]:
    """``clusters`` (inbound or the shared outbound part) after the proxy's CLUSTER patches."""
    patches = _patches(ctx, proxy, frozenset({ApplyTo.CLUSTER}), listener_context(proxy, inbound))
    if not patches:
        return list(clusters)
    out = [ops.copy(x) for x in clusters]
    own = frozenset(s.hostname for s in ctx.workloads_for(proxy)) if inbound else frozenset()

    def apply(p: Compiled, o: list[cluster_pb2.Cluster]) -> list[cluster_pb2.Cluster]:
        return cluster.apply(p, o, _adds_here(p, inbound), own)

    return ops.run(ctx.version, patches, out, apply, cluster.problems)


def patch_routes(
    ctx: PushContext, proxy: Proxy, cfg: route_pb2.RouteConfiguration
) -> route_pb2.RouteConfiguration:
    """A route configuration served over RDS (a sidecar's outbound ones, a gateway's) after the
    proxy's route-class patches."""
    context = Ctx.GATEWAY if proxy.type is ProxyType.ROUTER else Ctx.SIDECAR_OUTBOUND
    patches = _patches(ctx, proxy, route.KINDS, context)
    if not patches:
        return cfg
    return ops.run(ctx.version, patches, [ops.copy(cfg)], route.apply_for(context), route.problems)[0]
