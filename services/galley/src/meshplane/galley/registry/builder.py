"""One registry from all inputs: Kubernetes Services/EndpointSlices/Pods and ServiceEntry/WorkloadEntry."""

from __future__ import annotations

from collections.abc import Iterable

from meshplane.galley.registry import kubernetes, serviceentry
from meshplane.galley.sources.model import ConfigObject
from meshplane.proto.bus.v1 import registry_pb2

#: Istio's network label, on pods, WorkloadEntries and namespaces
NETWORK_LABEL = "topology.istio.io/network"


def build_registry(
    objects: Iterable[ConfigObject], cluster_id: str = "Kubernetes", network: str = ""
) -> tuple[dict[str, registry_pb2.Service], dict[str, registry_pb2.WorkloadInstance]]:
    """All services and workload instances; on a key clash (same namespace and name or host) the
    Kubernetes entry wins. Every instance carries ``cluster_id`` and its network: its pod's or
    WorkloadEntry's ``topology.istio.io/network`` label, else the WorkloadEntry's ``network``,
    else its namespace's label, else ``network`` (Galley's ``--network``)."""
    objs = list(objects)
    services, workloads = serviceentry.build(objs)
    kube_services, kube_workloads = kubernetes.build(objs)
    services.update(kube_services)
    workloads.update(kube_workloads)
    namespaces = {
        o.name: o.labels.get(NETWORK_LABEL, "") for o in objs if (o.kind, o.group) == ("Namespace", "")
    }
    for wl in workloads.values():
        wl.cluster_id = cluster_id
        wl.network = wl.labels.get(NETWORK_LABEL) or wl.network or namespaces.get(wl.namespace) or network
    return services, workloads
