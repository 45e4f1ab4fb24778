"""EDS: one ClusterLoadAssignment per cluster name, shared by every proxy that asks for it.

A cluster with locality load balancing has one assignment per (cluster name, proxy locality)
instead, and EDS parts are keyed by the proxy locality too (and by the proxy's values of the
labels a ``failoverPriority`` compares, when any does). Assignments live until an endpoint
push names their host.
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

        def build() -> Part:
            return Part({name: _endpoints(cache, ctx, name, proxy, lb_id) for name in sorted(wanted)})

        return (cache.endpoint_memo(("eds", wanted, lb_id), build),)


def _lb_identity(cache: GeneratorCache, ctx: PushContext, proxy: Proxy) -> str:
    """What locality load balancing sees of a proxy: its locality, and its values of the labels
    some ``failoverPriority`` compares (usually none, so proxies keep sharing)."""
    keys = cache.memo(("eds", "failover-keys"), lambda: failover_label_keys(ctx))
    if not keys:
        return proxy.locality
    return "\x1f".join([proxy.locality, *(proxy.labels.get(k, "") for k in keys)])


def _endpoints(cache: GeneratorCache, ctx: PushContext, name: str, proxy: Proxy, lb_id: str) -> Resource:
    """The CLA of ``name``: shared, or for this proxy's load-balancing identity when the cluster
    uses locality load balancing (one cluster has one kind of entry)."""
    store = cache.endpoint_resources
    res = store.get((name, None)) or store.get((name, lb_id))
    if res is not None:
        cache.count(hit=True)
        return res
    cache.count(hit=False)
    setting = locality_setting(ctx, name)
    if setting is None:
        res = store[(name, None)] = make_resource(name, build_load_assignment(ctx, name))
        return res
    rank = None if setting.distribute else label_priority(setting, proxy.labels, proxy.locality)
    if rank is not None:
        cla = build_load_assignment(ctx, name, rank)
        apply_label_priorities(cla, proxy.locality, setting)
    else:
        cla = build_load_assignment(ctx, name)
        apply_locality(cla, proxy.locality, setting)
    res = store[(name, lb_id)] = make_resource(name, cla)
    return res
