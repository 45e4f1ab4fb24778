"""EnvoyFilter (networking.istio.io): raw patches to the Envoy configuration Pilot generates."""

from __future__ import annotations

from enum import StrEnum

from meshplane.shared.config.models.base import (
    IstioModel,
    NetworkingWorkloadSelector,
    PolicyTargetReference,
    Struct,
)


class ApplyTo(StrEnum):
    INVALID = "INVALID"
    LISTENER = "LISTENER"
    FILTER_CHAIN = "FILTER_CHAIN"
    NETWORK_FILTER = "NETWORK_FILTER"
    HTTP_FILTER = "HTTP_FILTER"
    ROUTE_CONFIGURATION = "ROUTE_CONFIGURATION"
    VIRTUAL_HOST = "VIRTUAL_HOST"
    HTTP_ROUTE = "HTTP_ROUTE"
    CLUSTER = "CLUSTER"
    EXTENSION_CONFIG = "EXTENSION_CONFIG"
    BOOTSTRAP = "BOOTSTRAP"
    LISTENER_FILTER = "LISTENER_FILTER"


class PatchContext(StrEnum):
    ANY = "ANY"
    SIDECAR_INBOUND = "SIDECAR_INBOUND"
    SIDECAR_OUTBOUND = "SIDECAR_OUTBOUND"
    GATEWAY = "GATEWAY"
    WAYPOINT = "WAYPOINT"


class ProxyMatch(IstioModel):
    proxy_version: str | None = None
    metadata: dict[str, str] | None = None


class SubFilterMatch(IstioModel):
    name: str | None = None


class FilterMatch(IstioModel):
    name: str | None = None
    sub_filter: SubFilterMatch | None = None


class FilterChainMatch(IstioModel):
    name: str | None = None
    sni: str | None = None
    transport_protocol: str | None = None
    application_protocols: str | None = None
    filter: FilterMatch | None = None
    destination_port: int | None = None


class ListenerMatch(IstioModel):
    port_number: int | None = None
    port_name: str | None = None
    filter_chain: FilterChainMatch | None = None
    listener_filter: str | None = None
    name: str | None = None


class RouteMatch(IstioModel):
    name: str | None = None
    action: str | None = None


class VirtualHostMatch(IstioModel):
    name: str | None = None
    route: RouteMatch | None = None
    domain_name: str | None = None


class RouteConfigurationMatch(IstioModel):
    port_number: int | None = None
    port_name: str | None = None
    gateway: str | None = None
    vhost: VirtualHostMatch | None = None
    name: str | None = None


class ClusterMatch(IstioModel):
    port_number: int | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class WaypointMatch(IstioModel):
    filter: FilterMatch | None = None
    port_number: int | None = None


class EnvoyConfigObjectMatch(IstioModel):
    context: PatchContext | None = None
    waypoint: WaypointMatch | None = None
    proxy: ProxyMatch | None = None
    listener: ListenerMatch | None = None
    route_configuration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None


class Operation(StrEnum):
    INVALID = "INVALID"
    MERGE = "MERGE"
    ADD = "ADD"
    REMOVE = "REMOVE"
    INSERT_BEFORE = "INSERT_BEFORE"
    INSERT_AFTER = "INSERT_AFTER"
    INSERT_FIRST = "INSERT_FIRST"
    REPLACE = "REPLACE"


class FilterClass(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    AUTHN = "AUTHN"
    AUTHZ = "AUTHZ"
    STATS = "STATS"


class Patch(IstioModel):
    operation: Operation | None = None
    value: Struct | None = None
    filter_class: FilterClass | None = None


class EnvoyConfigObjectPatch(IstioModel):
    apply_to: ApplyTo | None = None
    match: EnvoyConfigObjectMatch | None = None
    patch: Patch | None = None


class EnvoyFilter(IstioModel):
    workload_selector: NetworkingWorkloadSelector | None = None
    target_refs: list[PolicyTargetReference] | None = None
    config_patches: list[EnvoyConfigObjectPatch] | None = None
    priority: int | None = None
