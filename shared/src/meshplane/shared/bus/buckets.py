"""The buckets every component agrees on, with their value types and key layout."""

from __future__ import annotations

from meshplane.proto.bus.v1 import config_pb2, registry_pb2, status_pb2, workload_entry_pb2
from meshplane.shared.bus.client import Bus
from meshplane.shared.bus.keys import make_key
from meshplane.shared.bus.kv import TypedKV
from meshplane.shared.bus.names import (
    COMPONENTS_BUCKET,
    CONFIG_BUCKET,
    MESH_CONFIG_BUCKET,
    PROXY_STATUS_BUCKET,
    SERVICES_BUCKET,
    TRUST_BUCKET,
    WORKLOAD_ENTRIES_BUCKET,
    WORKLOADS_BUCKET,
)

__all__ = [
    "COMPONENTS_BUCKET",
    "CONFIG_BUCKET",
    "MESH_CONFIG_BUCKET",
    "PROXY_STATUS_BUCKET",
    "SERVICES_BUCKET",
    "TRUST_BUCKET",
    "WORKLOADS_BUCKET",
    "WORKLOAD_ENTRIES_BUCKET",
    "Buckets",
    "config_key",
    "service_key",
    "workload_key",
]


def config_key(group: str, kind: str, namespace: str, name: str) -> str:
    return make_key(group, kind, namespace, name)


def service_key(namespace: str, hostname: str) -> str:
    return make_key(namespace, hostname)


def workload_key(namespace: str, name: str) -> str:
    return make_key(namespace, name)


class Buckets:
    """Typed views of the well-known buckets on one bus connection."""

    def __init__(self, bus: Bus) -> None:
        self.config = TypedKV(bus, CONFIG_BUCKET, config_pb2.ConfigResource)
        self.services = TypedKV(bus, SERVICES_BUCKET, registry_pb2.Service)
        self.workloads = TypedKV(bus, WORKLOADS_BUCKET, registry_pb2.WorkloadInstance)
        self.trust = TypedKV(bus, TRUST_BUCKET, status_pb2.TrustBundle)
        self.proxy_status = TypedKV(bus, PROXY_STATUS_BUCKET, status_pb2.ProxyStatus)
        self.components = TypedKV(bus, COMPONENTS_BUCKET, status_pb2.ComponentInfo)
        self.mesh_config = TypedKV(bus, MESH_CONFIG_BUCKET, config_pb2.ConfigResource)
        self.workload_entries = TypedKV(
            bus, WORKLOAD_ENTRIES_BUCKET, workload_entry_pb2.RegisteredWorkloadEntry
        )
