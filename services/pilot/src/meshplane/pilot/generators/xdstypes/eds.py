"""EDS: one ClusterLoadAssignment per cluster name, shared by every proxy that asks for it.

A cluster with locality load balancing has one assignment per (cluster name, proxy locality)
instead, and EDS parts are keyed by the proxy locality too (and by the proxy's values of the
labels a ``failoverPriority`` compares, when any does). A proxy on a network (or with a network
view, see ``network``) has its own assignments per network view, as other networks' endpoints are
replaced by their gateways. Assignments live until an endpoint push names their host.
"""

from __future__ import annotations

from meshplane.pilot.generators import common
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.locality import (
    apply_label_priorities,
    apply_locality,
    failover_label_keys,
    label_priority,
    locality_setting,
)
from meshplane.pilot.generators.network import NetworkView, proxy_view
from meshplane.pilot.model.generator import ConfigDump, GeneratorCache, XdsGenerator
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.model.resources import Part, Parts, Resource, make_resource


class EndpointGenerator(XdsGenerator):
    type_url = common.ENDPOINT
    short = "eds"
    debug_name = "endpoint"
    push_order = 20
    endpoint_driven = True
    resend_with = common.CLUSTER
    dump = ConfigDump(4, "EndpointsConfigDump", "dynamic_endpoint_configs", "endpoint_config")

    def needs_push(self, req: PushRequest) -> bool:
        """Every full push: a cluster Envoy re-receives waits (warms) for its endpoints."""
        return True

    def parts(
        self, cache: GeneratorCache, ctx: PushContext, proxy: Proxy, names: frozenset[str] | None
    ) -> Parts:
        wanted = names or frozenset()
        lb_id = _lb_identity(cache, ctx, proxy)
        view = proxy_view(ctx, proxy)

        def build() -> Part:
            return Part({name: _endpoints(cache, ctx, name, proxy, lb_id, view) for name in sorted(wanted)})

        return (cache.endpoint_memo(("eds", wanted, lb_id, view.key), build),)


def _lb_identity(cache: GeneratorCache, ctx: PushContext, proxy: Proxy) -> str:
    """What locality load balancing sees of a proxy: its locality, and its values of the labels
    some ``failoverPriority`` compares (usually none, so proxies keep sharing)."""
    keys = cache.memo(("eds", "failover-keys"), lambda: failover_label_keys(ctx))
    if not keys:
        return proxy.locality
    return "\x1f".join([proxy.locality, *(proxy.labels.get(k, "") for k in keys)])


def _endpoints(
    cache: GeneratorCache, ctx: PushContext, name: str, proxy: Proxy, lb_id: str, view: NetworkView
) -> Resource:
    """The CLA of ``name``: shared (per network view), or for this proxy's load-balancing identity
    when the cluster uses locality load balancing (one cluster has one kind of entry)."""
    store = cache.endpoint_resources
    shared_key = f"\x1dnet={view.key}" if view.key else None
    lb_key = f"{lb_id}\x1e{view.key}" if view.key else lb_id
    res = store.get((name, shared_key)) or store.get((name, lb_key))
    if res is not None:
        cache.count(hit=True)
        return res
    cache.count(hit=False)
    setting = locality_setting(ctx, name)
    if setting is None:
        res = store[(name, shared_key)] = make_resource(name, build_load_assignment(ctx, name, view=view))
        return res
    rank = None if setting.distribute else label_priority(setting, proxy.labels, proxy.locality)
    if rank is not None:
        cla = build_load_assignment(ctx, name, rank, view)
        apply_label_priorities(cla, proxy.locality, setting)
    else:
        cla = build_load_assignment(ctx, name, view=view)
        apply_locality(cla, proxy.locality, setting)
    res = store[(name, lb_key)] = make_resource(name, cla)
    return res
