"""CDS: the outbound clusters of a proxy's scope (shared) plus its own inbound clusters."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from meshplane.pilot.generators import clusters, common, envoyfilter
from meshplane.pilot.generators.xdstypes.scoped import ScopeAndOwnGenerator
from meshplane.pilot.model.generator import ConfigDump
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext


class ClusterGenerator(ScopeAndOwnGenerator):
    type_url = common.CLUSTER
    short = "cds"
    debug_name = "cluster"
    push_order = 10
    kinds = clusters.KINDS | envoyfilter.KINDS
    dump = ConfigDump(1, "ClustersConfigDump", "dynamic_active_clusters", "cluster")

    def shared(self, ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
        return envoyfilter.patch_clusters(ctx, proxy, clusters.shared_clusters(ctx, proxy), inbound=False)

    def own(self, ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
        return envoyfilter.patch_clusters(ctx, proxy, clusters.own_clusters(ctx, proxy), inbound=True)
