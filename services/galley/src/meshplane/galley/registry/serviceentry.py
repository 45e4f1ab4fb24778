"""Registry from ServiceEntry + WorkloadEntry (local mode, VMs): how Istio meshes non-Kubernetes workloads.

Each ServiceEntry host becomes one ``Service``. Its instances are the inline ``endpoints``
(named ``<serviceentry>-<index>``) and, with a ``workloadSelector``, every WorkloadEntry in the
same namespace whose labels match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshplane.galley.registry.protocol import parse_protocol, protocol_from_port_name
from meshplane.galley.sources.model import ConfigObject
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.bus.buckets import service_key, workload_key

_RESOLUTION = {
    "NONE": registry_pb2.NONE,
    "STATIC": registry_pb2.STATIC,
    "DNS": registry_pb2.DNS,
    "DNS_ROUND_ROBIN": registry_pb2.DNS_ROUND_ROBIN,
}

Services = dict[str, registry_pb2.Service]
Workloads = dict[str, registry_pb2.WorkloadInstance]


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _ports(spec: Mapping[str, Any]) -> list[registry_pb2.ServicePort]:
    out = []
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        name = str(port.get("name", ""))
        proto = str(port.get("protocol", ""))
        out.append(
            registry_pb2.ServicePort(
                name=name,
                number=int(port.get("number", 0)),
                protocol=parse_protocol(proto) if proto else protocol_from_port_name(name),
                target_port=int(port.get("targetPort", 0) or 0),
            )
        )
    return out


def _instance(
    name: str, namespace: str, entry: Mapping[str, Any], source: registry_pb2.RegistrySource, hosts: list[str]
) -> registry_pb2.WorkloadInstance:
    return registry_pb2.WorkloadInstance(
        name=name,
        namespace=namespace,
        address=str(entry.get("address", "")),
        labels=_str_map(entry.get("labels")),
        service_account=str(entry.get("serviceAccount", "")),
        locality=str(entry.get("locality", "")),
        health=registry_pb2.HEALTHY,
        network=str(entry.get("network", "")),
        weight=int(entry.get("weight", 0) or 0),
        ports={str(k): int(v) for k, v in (entry.get("ports") or {}).items()},
        services=hosts,
        source=source,
    )


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def build(objects: Iterable[ConfigObject]) -> tuple[Services, Workloads]:
    """Services and workload instances from the ServiceEntries and WorkloadEntries among ``objects``."""
    entries = [o for o in objects if o.group == "networking.istio.io"]
    workload_entries = [o for o in entries if o.kind == "WorkloadEntry"]
    services: Services = {}
    workloads: Workloads = {}
    we_hosts: dict[str, list[str]] = {}
    for se in (o for o in entries if o.kind == "ServiceEntry"):
        spec = se.spec
        hosts = [str(h) for h in spec.get("hosts") or []]
        selector = _str_map((spec.get("workloadSelector") or {}).get("labels"))
        source = registry_pb2.RegistrySource(kind="ServiceEntry", namespace=se.namespace, name=se.name)
        ports = _ports(spec)
        for host in hosts:
            services[service_key(se.namespace, host)] = registry_pb2.Service(
                hostname=host,
                namespace=se.namespace,
                ports=ports,
                resolution=_RESOLUTION.get(str(spec.get("resolution", "NONE")), registry_pb2.NONE),
                export_to=[str(e) for e in spec.get("exportTo") or []] or ["*"],
                addresses=[str(a) for a in spec.get("addresses") or []],
                mesh_external=spec.get("location") == "MESH_EXTERNAL",
                labels=se.labels,
                source=source,
                selector=selector,
            )
        for index, endpoint in enumerate(spec.get("endpoints") or []):
            if isinstance(endpoint, dict):
                name = f"{se.name}-{index}"
                workloads[workload_key(se.namespace, name)] = _instance(
                    name, se.namespace, endpoint, source, hosts
                )
        for we in workload_entries:
            if we.namespace == se.namespace and _selects(selector, _str_map(we.spec.get("labels"))):
                we_hosts.setdefault(we.key, []).extend(hosts)
    for we in workload_entries:
        source = registry_pb2.RegistrySource(kind="WorkloadEntry", namespace=we.namespace, name=we.name)
        spec = dict(we.spec)
        spec.setdefault("labels", {})
        workloads[workload_key(we.namespace, we.name)] = _instance(
            we.name, we.namespace, spec, source, sorted(set(we_hosts.get(we.key, [])))
        )
    return services, workloads
