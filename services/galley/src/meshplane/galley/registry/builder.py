"""One registry from all inputs: Kubernetes Services/EndpointSlices/Pods and ServiceEntry/WorkloadEntry."""

from __future__ import annotations

from collections.abc import Iterable

from meshplane.galley.registry import kubernetes, serviceentry
from meshplane.galley.sources.model import ConfigObject
from meshplane.proto.bus.v1 import registry_pb2


def build_registry(
    objects: Iterable[ConfigObject],
) -> tuple[dict[str, registry_pb2.Service], dict[str, registry_pb2.WorkloadInstance]]:
    """All services and workload instances; on a key clash (same namespace and name or host) the
    Kubernetes entry wins."""
    objs = list(objects)
    services, workloads = serviceentry.build(objs)
    kube_services, kube_workloads = kubernetes.build(objs)
    services.update(kube_services)
    workloads.update(kube_workloads)
    return services, workloads
