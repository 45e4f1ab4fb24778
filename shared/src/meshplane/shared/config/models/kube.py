"""The registry-relevant parts of Kubernetes Service, EndpointSlice, Endpoints, Pod and Namespace.

Only the fields Galley and Pilot read are typed; every other field Kubernetes carries is kept.
"""

from __future__ import annotations

from pydantic import Field

from meshplane.shared.config.models.base import KubeModel


class ServicePort(KubeModel):
    name: str | None = None
    port: int
    target_port: int | str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    node_port: int | None = None


class ServiceSpec(KubeModel):
    ports: list[ServicePort] | None = None
    selector: dict[str, str] | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    type: str | None = None
    external_name: str | None = None


class EndpointConditions(KubeModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ObjectReference(KubeModel):
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class Endpoint(KubeModel):
    addresses: list[str]
    conditions: EndpointConditions | None = None
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(KubeModel):
    name: str | None = None
    port: int | None = None
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSlice(KubeModel):
    """An EndpointSlice has no ``spec``: its fields sit at the top level of the object."""

    address_type: str | None = None
    endpoints: list[Endpoint] | None = None
    ports: list[EndpointPort] | None = None


class EndpointAddress(KubeModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointSubset(KubeModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(KubeModel):
    """Endpoints carry ``subsets`` at the top level of the object."""

    subsets: list[EndpointSubset] | None = None


class ContainerPort(KubeModel):
    name: str | None = None
    container_port: int
    protocol: str | None = None


class Container(KubeModel):
    name: str
    image: str | None = None
    ports: list[ContainerPort] | None = None


class PodSpec(KubeModel):
    containers: list[Container] | None = None
    service_account_name: str | None = None
    node_name: str | None = None
    host_network: bool | None = None


class PodIP(KubeModel):
    ip: str


class PodStatus(KubeModel):
    phase: str | None = None
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    host_ip: str | None = Field(default=None, alias="hostIP")


class NamespaceSpec(KubeModel):
    finalizers: list[str] | None = None
