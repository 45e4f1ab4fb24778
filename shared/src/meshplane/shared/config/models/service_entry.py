"""ServiceEntry, WorkloadEntry and WorkloadGroup (networking.istio.io): the mesh's own registry."""

from __future__ import annotations

from enum import StrEnum

from meshplane.shared.config.models.base import IstioModel, NetworkingWorkloadSelector


class ServicePort(IstioModel):
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class Location(StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


class Resolution(StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    DYNAMIC_DNS = "DYNAMIC_DNS"


class WorkloadEntry(IstioModel):
    """The spec of a WorkloadEntry, also used for ServiceEntry endpoints and group templates."""

    address: str | None = None
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


class ServiceEntry(IstioModel):
    hosts: list[str] | None = None
    addresses: list[str] | None = None
    ports: list[ServicePort] | None = None
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: NetworkingWorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None


class ObjectMeta(IstioModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class HTTPHeader(IstioModel):
    name: str | None = None
    value: str | None = None


class HTTPHealthCheckConfig(IstioModel):
    path: str | None = None
    port: int | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPHealthCheckConfig(IstioModel):
    host: str | None = None
    port: int | None = None


class ExecHealthCheckConfig(IstioModel):
    command: list[str] | None = None


class GrpcHealthCheckConfig(IstioModel):
    port: int | None = None
    service: str | None = None


class ReadinessProbe(IstioModel):
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    http_get: HTTPHealthCheckConfig | None = None
    tcp_socket: TCPHealthCheckConfig | None = None
    exec: ExecHealthCheckConfig | None = None
    grpc: GrpcHealthCheckConfig | None = None


class WorkloadGroup(IstioModel):
    metadata: ObjectMeta | None = None
    template: WorkloadEntry | None = None
    probe: ReadinessProbe | None = None
