"""Port numbers, port names and Istio protocol names."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import is_istio_label

#: Istio's protocol names (matched case-insensitively, as Istio's protocol.Parse does).
PROTOCOLS: frozenset[str] = frozenset(
    {
        "TCP",
        "UDP",
        "GRPC",
        "GRPC-WEB",
        "HTTP",
        "HTTP_PROXY",
        "HTTP2",
        "HTTPS",
        "TLS",
        "MONGO",
        "REDIS",
        "MYSQL",
    }
)
HTTP_PROTOCOLS: frozenset[str] = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"})
TLS_PROTOCOLS: frozenset[str] = frozenset({"HTTPS", "TLS"})


def check_port(number: int) -> str | None:
    if 1 <= number <= 65535:
        return None
    return f"port number {number} must be in the range 1..65535"


def check_port_name(name: str) -> str | None:
    if is_istio_label(name):
        return None
    return f"invalid port name {name!r} (must be a DNS-1123 label)"


def check_protocol(protocol: str) -> str | None:
    if protocol.upper() in PROTOCOLS:
        return None
    return f"unrecognized protocol {protocol!r}"


def protocol_of(protocol: str | None) -> str:
    """The canonical upper-case protocol name ("" when unset)."""
    return (protocol or "").upper()
