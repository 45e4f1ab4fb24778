"""Istio's MeshNetworks: which network an endpoint is on, and the gateways that reach each network.

Given as ``meshNetworks`` in the MeshConfig mapping (or as the ``istio`` ConfigMap's
``data.meshNetworks``, Istio's place for it), in Istio's shape::

    networks:
      network1:
        endpoints:
        - fromRegistry: cluster1        # the endpoints of this cluster (its cluster ID) ...
        - fromCidr: 10.1.0.0/16         # ... or whose address is in this range
        gateways:
        - address: 192.0.2.10           # an IP or a DNS name
          port: 15443
        - registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local
          port: 15443

Pilot sends a proxy the endpoints of its own network as they are, and replaces those of another
network by that network's gateways (``meshplane.pilot.generators.network``). Values are checked as
Istio's ``ValidateMeshNetworks`` does; a bad one is refused with a message naming the field.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

#: Istio's port for the east-west gateway's AUTO_PASSTHROUGH server (``tls``)
GATEWAY_PORT = 15443

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class MeshNetworksError(ValueError):
    """MeshNetworks that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class NetworkGateway:
    """One gateway of a network: a fixed ``address`` (IP or DNS name) or the service
    ``registry_service_name`` (its addresses are its endpoints' in the registry), and its port."""

    port: int
    address: str = ""
    registry_service_name: str = ""
    #: ``locality`` as written (Istio reads it nowhere; the gateway takes its endpoints' locality)
    locality: str = ""


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    #: ``endpoints[].fromRegistry``: cluster IDs whose endpoints are on this network
    from_registries: tuple[str, ...] = ()
    #: ``endpoints[].fromCidr``: address ranges on this network
    from_cidrs: tuple[str, ...] = ()
    gateways: tuple[NetworkGateway, ...] = ()


@dataclass(frozen=True, slots=True)
class MeshNetworks:
    networks: tuple[Network, ...] = ()

    @property
    def gateway_services(self) -> frozenset[str]:
        """The hostnames of every ``registryServiceName`` gateway."""
        return frozenset(
            g.registry_service_name for n in self.networks for g in n.gateways if g.registry_service_name
        )

    @property
    def not_applied(self) -> tuple[str, ...]:
        """Fields given that nothing reads (a gateway's ``locality``, unread in Istio too)."""
        return tuple(
            f"meshNetworks.networks.{n.name}.gateways[{i}].locality"
            for n in self.networks
            for i, g in enumerate(n.gateways)
            if g.locality
        )

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)

    def network_of(self, address: str, cluster_id: str) -> str:
        """The network MeshNetworks gives an endpoint without a network of its own: the one whose
        ``fromRegistry`` names its cluster, else the first whose ``fromCidr`` holds its address
        (Istio's order); "" when none does."""
        if not self.networks:
            return ""
        if cluster_id:
            for net in self.networks:
                if cluster_id in net.from_registries:
                    return net.name
        if not any(net.from_cidrs for net in self.networks):
            return ""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return ""
        for net in self.networks:
            if any(ip in _cidr(c) for c in net.from_cidrs):
                return net.name
        return ""

    def registry_network(self, cluster_id: str) -> str:
        """The network whose ``fromRegistry`` names ``cluster_id`` ("" when none)."""
        return next((n.name for n in self.networks if cluster_id in n.from_registries), "")


def parse_mesh_networks(raw: Any, where: str) -> MeshNetworks:
    """Check and read MeshNetworks (``{networks: {...}}``); MeshNetworksError names the bad field."""
    if raw is None:
        return MeshNetworks()
    if not isinstance(raw, dict):
        raise MeshNetworksError(f"{where}: expected a mapping with networks, got {type(raw).__name__}")
    unknown = [str(k) for k in raw if k != "networks"]
    if unknown:
        raise MeshNetworksError(f"{where}: unknown field(s) {', '.join(unknown)} (expected networks)")
    networks = raw.get("networks") or {}
    if not isinstance(networks, dict):
        raise MeshNetworksError(f"{where}.networks: expected a mapping of network names")
    out = []
    for name, body in networks.items():
        at = f"{where}.networks.{name}"
        if not isinstance(name, str) or not name:
            raise MeshNetworksError(f"{where}.networks: a network name must be a non-empty string: {name!r}")
        out.append(_network(name, body or {}, at))
    return MeshNetworks(tuple(out))


def _network(name: str, body: Any, at: str) -> Network:
    if not isinstance(body, dict):
        raise MeshNetworksError(f"{at}: expected a mapping with endpoints and gateways")
    unknown = [str(k) for k in body if k not in ("endpoints", "gateways")]
    if unknown:
        raise MeshNetworksError(f"{at}: unknown field(s) {', '.join(unknown)} (expected endpoints, gateways)")
    registries: list[str] = []
    cidrs: list[str] = []
    for i, entry in enumerate(_list(body.get("endpoints"), f"{at}.endpoints")):
        where = f"{at}.endpoints[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1 or not {"fromRegistry", "fromCidr"} & set(entry):
            raise MeshNetworksError(f"{where}: expected exactly one of fromRegistry or fromCidr")
        if "fromRegistry" in entry:
            registry = entry["fromRegistry"]
            if not isinstance(registry, str) or not _DNS_LABEL.match(registry):
                raise MeshNetworksError(
                    f"{where}.fromRegistry: {registry!r} is not a cluster ID (a DNS label)"
                )
            registries.append(registry)
        else:
            cidr = entry["fromCidr"]
            if not isinstance(cidr, str) or not _is_cidr(cidr):
                raise MeshNetworksError(f"{where}.fromCidr: {cidr!r} is not a CIDR range such as 10.1.0.0/16")
            cidrs.append(cidr)
    gateways = [
        _gateway(entry, f"{at}.gateways[{i}]")
        for i, entry in enumerate(_list(body.get("gateways"), f"{at}.gateways"))
    ]
    return Network(name, tuple(registries), tuple(cidrs), tuple(gateways))


def _gateway(entry: Any, where: str) -> NetworkGateway:
    if not isinstance(entry, dict):
        raise MeshNetworksError(f"{where}: expected a mapping with address or registryServiceName, and port")
    unknown = [str(k) for k in entry if k not in ("address", "registryServiceName", "port", "locality")]
    if unknown:
        raise MeshNetworksError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kinds = [k for k in ("address", "registryServiceName") if k in entry]
    if len(kinds) != 1:
        raise MeshNetworksError(f"{where}: expected exactly one of address or registryServiceName")
    value = entry[kinds[0]]
    is_ip = isinstance(value, str) and kinds[0] == "address" and _is_ip(value)
    if not isinstance(value, str) or not is_ip and not _is_fqdn(value):
        what = "an IP address or DNS name" if kinds[0] == "address" else "a service hostname (FQDN)"
        raise MeshNetworksError(f"{where}.{kinds[0]}: {value!r} is not {what}")
    port = entry.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise MeshNetworksError(
            f"{where}.port: expected a port 1-65535 (Istio's: {GATEWAY_PORT}), got {port!r}"
        )
    locality = entry.get("locality", "")
    if not isinstance(locality, str):
        raise MeshNetworksError(f"{where}.locality: expected a string, got {locality!r}")
    if kinds[0] == "address":
        return NetworkGateway(port, address=value, locality=locality)
    return NetworkGateway(port, registry_service_name=value, locality=locality)


def _list(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MeshNetworksError(f"{where}: expected a list, got {type(raw).__name__}")
    return raw


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_fqdn(value: str) -> bool:
    """Istio's ValidateFQDN: DNS-1123 labels, the last one not all digits."""
    return bool(_DNS_NAME.match(value)) and not value.rsplit(".", 1)[-1].isdigit()


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


@functools.lru_cache(maxsize=512)
def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value, strict=False)
