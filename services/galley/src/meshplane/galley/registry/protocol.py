"""Port protocols as Istio infers them: explicit protocol, ``appProtocol``, or the port-name prefix."""

from __future__ import annotations

from typing import TypeAlias

from meshplane.proto.bus.v1 import registry_pb2

PortProtocol: TypeAlias = registry_pb2.Protocol.ValueType

_BY_NAME: dict[str, PortProtocol] = {
    "http": registry_pb2.HTTP,
    "http2": registry_pb2.HTTP2,
    "https": registry_pb2.HTTPS,
    "grpc": registry_pb2.GRPC,
    "grpc-web": registry_pb2.GRPC_WEB,
    "tcp": registry_pb2.TCP,
    "tls": registry_pb2.TLS,
    "mongo": registry_pb2.MONGO,
    "redis": registry_pb2.REDIS,
    "mysql": registry_pb2.MYSQL,
    "udp": registry_pb2.UDP,
}

#: Kubernetes' standard appProtocol values that Istio maps.
_APP_PROTOCOLS: dict[str, PortProtocol] = {
    "kubernetes.io/h2c": registry_pb2.HTTP2,
    "kubernetes.io/ws": registry_pb2.HTTP,
    "kubernetes.io/wss": registry_pb2.HTTPS,
}


def parse_protocol(value: str) -> PortProtocol:
    """A protocol name (case-insensitive) as a ``registry_pb2.Protocol``; unknown → unspecified."""
    return _BY_NAME.get(value.strip().lower(), registry_pb2.PROTOCOL_UNSPECIFIED)


def protocol_from_port_name(name: str) -> PortProtocol:
    """Istio's naming convention ``<protocol>[-<suffix>]``; ``grpc-web`` is matched whole first."""
    lowered = name.lower()
    if lowered == "grpc-web" or lowered.startswith("grpc-web-"):
        return registry_pb2.GRPC_WEB
    return parse_protocol(lowered.split("-", 1)[0])


def service_port_protocol(name: str, app_protocol: str = "", transport: str = "TCP") -> PortProtocol:
    """A Kubernetes Service port's protocol: UDP transport, then appProtocol, then the name."""
    if transport.upper() == "UDP":
        return registry_pb2.UDP
    if app_protocol:
        mapped = _APP_PROTOCOLS.get(app_protocol.lower())
        if mapped is not None:
            return mapped
        parsed = parse_protocol(app_protocol)
        if parsed != registry_pb2.PROTOCOL_UNSPECIFIED:
            return parsed
    return protocol_from_port_name(name)
