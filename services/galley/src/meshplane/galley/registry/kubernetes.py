"""Registry from Kubernetes Services, EndpointSlices and Pods, as Istio's Kubernetes registry builds it.

A Service becomes ``<name>.<namespace>.svc.cluster.local``; each EndpointSlice endpoint becomes a
WorkloadInstance (named after its Pod when the slice points at one, taking the Pod's labels and
service account); a Pod behind several Services is one instance listing all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshplane.galley.registry.protocol import service_port_protocol
from meshplane.galley.sources.model import ConfigObject
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus.buckets import service_key, workload_key

DOMAIN_SUFFIX = "svc.cluster.local"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
REGION_LABEL = "topology.kubernetes.io/region"

Services = dict[str, registry_pb2.Service]
Workloads = dict[str, registry_pb2.WorkloadInstance]


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def hostname(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{DOMAIN_SUFFIX}"


def _service(svc: ConfigObject) -> registry_pb2.Service:
    spec = svc.spec
    ports = []
    for port in spec.get("ports") or []:
        if not isinstance(port, Mapping):
            continue
        name = str(port.get("name", ""))
        target = port.get("targetPort")
        ports.append(
            registry_pb2.ServicePort(
                name=name,
                number=int(port.get("port", 0)),
                protocol=service_port_protocol(
                    name, str(port.get("appProtocol", "")), str(port.get("protocol", "TCP"))
                ),
                target_port=target if isinstance(target, int) else 0,
            )
        )
    cluster_ips = [
        str(ip) for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ]
    if spec.get("type") == "ExternalName":
        resolution = registry_pb2.DNS
    elif "None" in cluster_ips:
        resolution = registry_pb2.NONE
    else:
        resolution = registry_pb2.STATIC
    export = svc.annotations.get(EXPORT_TO_ANNOTATION, "")
    return registry_pb2.Service(
        hostname=hostname(svc.name, svc.namespace),
        namespace=svc.namespace,
        ports=ports,
        resolution=resolution,
        export_to=[e.strip() for e in export.split(",") if e.strip()] or ["*"],
        addresses=[ip for ip in cluster_ips if ip != "None"],
        labels=svc.labels,
        source=registry_pb2.RegistrySource(kind="Service", namespace=svc.namespace, name=svc.name),
        selector=_str_map(spec.get("selector")),
    )


def _health(endpoint: Mapping[str, Any]) -> registry_pb2.Health.ValueType:
    conditions = endpoint.get("conditions") or {}
    if conditions.get("terminating"):
        return registry_pb2.DRAINING
    if conditions.get("ready", True) is False:
        return registry_pb2.UNHEALTHY
    return registry_pb2.HEALTHY


def build(objects: Iterable[ConfigObject]) -> tuple[Services, Workloads]:
    """Services and instances from the core Services, EndpointSlices and Pods among ``objects``."""
    objs = [o for o in objects if o.group in ("", "discovery.k8s.io")]
    pods = {(o.namespace, o.name): o for o in objs if o.kind == "Pod" and not o.group}
    services: Services = {}
    for svc in (o for o in objs if o.kind == "Service" and not o.group):
        services[service_key(svc.namespace, hostname(svc.name, svc.namespace))] = _service(svc)
    workloads: Workloads = {}
    for eps in (o for o in objs if o.kind == "EndpointSlice" and o.group == "discovery.k8s.io"):
        svc_name = eps.labels.get(SERVICE_NAME_LABEL)
        if not svc_name:
            continue
        host = hostname(svc_name, eps.namespace)
        ports = {
            str(p.get("name", "")): int(p.get("port", 0))
            for p in eps.obj.get("ports") or []
            if isinstance(p, Mapping) and p.get("port")
        }
        for index, endpoint in enumerate(eps.obj.get("endpoints") or []):
            if not isinstance(endpoint, Mapping) or not endpoint.get("addresses"):
                continue
            ref = endpoint.get("targetRef") or {}
            pod = pods.get((eps.namespace, str(ref.get("name", "")))) if ref.get("kind") == "Pod" else None
            name = pod.name if pod else f"{eps.name}-{index}"
            key = workload_key(eps.namespace, name)
            existing = workloads.get(key)
            if existing is not None:
                if host not in existing.services:
                    existing.services.append(host)
                existing.ports.update(ports)
                continue
            labels = pod.labels if pod else {}
            region = labels.get(REGION_LABEL, "")
            zone = str(endpoint.get("zone", ""))
            workloads[key] = registry_pb2.WorkloadInstance(
                name=name,
                namespace=eps.namespace,
                address=str(endpoint["addresses"][0]),
                labels=labels,
                service_account=str(pod.spec.get("serviceAccountName", "")) if pod else "",
                locality=f"{region}/{zone}" if region or zone else "",
                health=_health(endpoint),
                ports=ports,
                services=[host],
                source=registry_pb2.RegistrySource(kind="Service", namespace=eps.namespace, name=svc_name),
            )
    return services, workloads
