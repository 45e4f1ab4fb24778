"""``CLUSTER`` patches, matched as Istio's ``cluster_patch.go`` matches them: by exact name, or by
the parts of ``direction|port|subset|host``."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from meshplane.pilot.generators.envoyfilter import ops
from meshplane.pilot.generators.envoyfilter.rules import duplicates, proto_problems
from meshplane.pilot.generators.envoyfilter.select import Compiled
from meshplane.shared.config.models.envoy_filter import Operation


def matches(patch: Compiled, cluster: cluster_pb2.Cluster, own_hosts: frozenset[str] = frozenset()) -> bool:
    """``own_hosts``: the services of the proxy, which its ``inbound|port||`` clusters serve."""
    cm = patch.spec.match.cluster if patch.spec.match is not None else None
    if cm is None:
        return True
    if cm.name:
        return bool(cm.name == cluster.name)
    parts = cluster.name.split("|")
    if len(parts) != 4:
        return not (cm.subset or cm.port_number or cm.service)
    direction, port, subset, host = parts
    if cm.subset and cm.subset != subset:
        return False
    if cm.port_number and str(cm.port_number) != port:
        return False
    if cm.service and direction == "inbound" and not host:
        return cm.service in own_hosts
    return not cm.service or cm.service == host


def _merge_socket(cluster: cluster_pb2.Cluster, new: cluster_pb2.Cluster) -> None:
    """A MERGE value with a transport socket applies only the socket (Istio's special case): into
    the ``transport_socket_matches`` entry of the same name, else into the cluster's socket of the
    same name, else replacing the cluster's socket."""
    socket = new.transport_socket
    if len(cluster.transport_socket_matches):
        for entry in cluster.transport_socket_matches:
            if entry.transport_socket.name == socket.name:
                ops.merge(entry.transport_socket, socket)
        return
    if cluster.HasField("transport_socket") and cluster.transport_socket.name == socket.name:
        ops.merge(cluster.transport_socket, socket)
    else:
        cluster.transport_socket.CopyFrom(socket)


def apply(
    patch: Compiled, out: list[cluster_pb2.Cluster], add_here: bool, own_hosts: frozenset[str]
) -> list[cluster_pb2.Cluster]:
    if patch.op == Operation.MERGE and patch.value is not None and patch.value.HasField("transport_socket"):
        new = ops.value(patch, cluster_pb2.Cluster)
        for cluster in out:
            if matches(patch, cluster, own_hosts):
                _merge_socket(cluster, new)
        return out
    return ops.object_op(patch, out, add_here, cluster_pb2.Cluster, lambda c: matches(patch, c, own_hosts))


def problems(changed: list[cluster_pb2.Cluster], everything: list[cluster_pb2.Cluster]) -> list[str]:
    out = [p for c in changed for p in proto_problems(c, f"Cluster {c.name}")]
    return out + duplicates((c.name for c in everything), "cluster name")
