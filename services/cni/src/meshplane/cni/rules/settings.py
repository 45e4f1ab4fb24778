"""Capture settings for one pod, built from its Istio annotations (pure, stdlib only).

The plugin runs on the container runtime's hot path, so this module imports nothing heavier
than :mod:`ipaddress`, and that only for pods with CIDR annotations.  A value that does not
parse raises :class:`AnnotationError` naming the annotation and the bad item, so the plugin can
fail closed with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

PROXY_UID = "1337"
PROXY_GID = "1337"
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HBONE_PORT = 15008
STATUS_PORT = 15020
HEALTH_PORT = 15021
ENVOY_PROMETHEUS_PORT = 15090
ALL = "*"

ANN_INJECT = "sidecar.istio.io/inject"
ANN_STATUS = "sidecar.istio.io/status"
ANN_MODE = "sidecar.istio.io/interceptionMode"
ANN_INCLUDE_CIDRS = "traffic.sidecar.istio.io/includeOutboundIPRanges"
ANN_EXCLUDE_CIDRS = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
ANN_INCLUDE_IN_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
ANN_EXCLUDE_IN_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
ANN_INCLUDE_OUT_PORTS = "traffic.sidecar.istio.io/includeOutboundPorts"
ANN_EXCLUDE_OUT_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
ANN_EXCLUDE_INTERFACES = "traffic.sidecar.istio.io/excludeInterfaces"
ANN_STATUS_PORT = "status.sidecar.istio.io/port"

MODES = ("REDIRECT", "TPROXY")


class AnnotationError(ValueError):
    """An annotation value that cannot be turned into capture rules."""

    def __init__(self, annotation: str, value: str, problem: str) -> None:
        super().__init__(f"annotation {annotation}={value!r}: {problem}")
        self.annotation = annotation
        self.value = value


class CaptureSettings(NamedTuple):
    """Everything the rule generator needs; defaults are Istio's (a NamedTuple: cheap to import)."""

    mode: str = "REDIRECT"
    proxy_port: int = OUTBOUND_PORT
    inbound_port: int = INBOUND_PORT
    proxy_uid: str = PROXY_UID
    proxy_gid: str = PROXY_GID
    include_inbound_ports: tuple[str, ...] = (ALL,)
    exclude_inbound_ports: tuple[int, ...] = (ENVOY_PROMETHEUS_PORT, HEALTH_PORT, STATUS_PORT)
    include_outbound_cidrs: tuple[str, ...] = (ALL,)
    exclude_outbound_cidrs: tuple[str, ...] = ()
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = (STATUS_PORT,)
    exclude_interfaces: tuple[str, ...] = ()
    tproxy_mark: int = 1337
    tproxy_table: int = 133


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _ports(annotation: str, value: str) -> tuple[int, ...]:
    ports: list[int] = []
    for item in _items(value):
        if not item.isdigit() or not 0 <= int(item) <= 65535:
            raise AnnotationError(annotation, value, f"{item!r} is not a port number (0-65535)")
        if int(item) not in ports:
            ports.append(int(item))
    return tuple(ports)


def _cidrs(annotation: str, value: str, allow_all: bool) -> tuple[str, ...]:
    items = _items(value)
    if allow_all and items == [ALL]:
        return (ALL,)
    import ipaddress

    cidrs: list[str] = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise AnnotationError(annotation, value, f"{item!r} is not a CIDR") from None
        if str(network) not in cidrs:
            cidrs.append(str(network))
    return tuple(cidrs)


def _interfaces(annotation: str, value: str) -> tuple[str, ...]:
    names = _items(value)
    for name in names:
        if len(name) > 15 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise AnnotationError(annotation, value, f"{name!r} is not an interface name")
    return tuple(names)


def _merged(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    return first + tuple(p for p in second if p not in first)


def settings_from_annotations(annotations: Mapping[str, str]) -> CaptureSettings:
    """Build the capture settings for a pod from its annotations (Istio's names and defaults)."""
    mode = annotations.get(ANN_MODE, "REDIRECT").strip().upper()
    if mode not in MODES:
        raise AnnotationError(ANN_MODE, annotations[ANN_MODE], f"expected one of {', '.join(MODES)}")

    status_port = STATUS_PORT
    if ANN_STATUS_PORT in annotations:
        found = _ports(ANN_STATUS_PORT, annotations[ANN_STATUS_PORT])
        if len(found) != 1:
            raise AnnotationError(ANN_STATUS_PORT, annotations[ANN_STATUS_PORT], "expected one port")
        status_port = found[0]

    include_in: tuple[str, ...] = (ALL,)
    if ANN_INCLUDE_IN_PORTS in annotations:
        raw = annotations[ANN_INCLUDE_IN_PORTS]
        include_in = (ALL,) if raw.strip() == ALL else tuple(map(str, _ports(ANN_INCLUDE_IN_PORTS, raw)))

    defaults_in = (ENVOY_PROMETHEUS_PORT, HEALTH_PORT, status_port)
    exclude_in = _merged(defaults_in, _ports(ANN_EXCLUDE_IN_PORTS, annotations.get(ANN_EXCLUDE_IN_PORTS, "")))
    exclude_out = _merged(
        (status_port,), _ports(ANN_EXCLUDE_OUT_PORTS, annotations.get(ANN_EXCLUDE_OUT_PORTS, ""))
    )
    include_cidrs: tuple[str, ...] = (ALL,)
    if ANN_INCLUDE_CIDRS in annotations:
        include_cidrs = _cidrs(ANN_INCLUDE_CIDRS, annotations[ANN_INCLUDE_CIDRS], allow_all=True)
    return CaptureSettings(
        mode=mode,
        include_inbound_ports=include_in,
        exclude_inbound_ports=exclude_in,
        include_outbound_cidrs=include_cidrs,
        exclude_outbound_cidrs=_cidrs(
            ANN_EXCLUDE_CIDRS, annotations.get(ANN_EXCLUDE_CIDRS, ""), allow_all=False
        ),
        include_outbound_ports=_ports(ANN_INCLUDE_OUT_PORTS, annotations.get(ANN_INCLUDE_OUT_PORTS, "")),
        exclude_outbound_ports=exclude_out,
        exclude_interfaces=_interfaces(ANN_EXCLUDE_INTERFACES, annotations.get(ANN_EXCLUDE_INTERFACES, "")),
    )
