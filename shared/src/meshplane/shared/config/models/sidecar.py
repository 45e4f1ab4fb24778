"""Sidecar (networking.istio.io): which traffic a workload's proxy accepts and may reach."""

from __future__ import annotations

from enum import StrEnum

from meshplane.shared.config.models.base import IstioModel, NetworkingWorkloadSelector
from meshplane.shared.config.models.destination_rule import ConnectionPoolSettings
from meshplane.shared.config.models.gateway import Port, ServerTLSSettings
from meshplane.shared.config.models.virtual_service import Destination

#: Sidecar listener ports have the same fields as Gateway server ports.
SidecarPort = Port


class CaptureMode(StrEnum):
    DEFAULT = "DEFAULT"
    IPTABLES = "IPTABLES"
    NONE = "NONE"


class IstioIngressListener(IstioModel):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(IstioModel):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str] | None = None


class OutboundMode(StrEnum):
    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"
    ALLOW_ANY_DYNAMIC_DNS = "ALLOW_ANY_DYNAMIC_DNS"


class OutboundTrafficPolicy(IstioModel):
    mode: OutboundMode | None = None
    egress_proxy: Destination | None = None


class Sidecar(IstioModel):
    workload_selector: NetworkingWorkloadSelector | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
