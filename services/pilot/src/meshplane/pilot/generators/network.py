"""Network-aware EDS (Istio's EndpointsByNetworkFilter): other networks through their gateways.

An endpoint's network is its own (``WorkloadInstance.network`` or the ``topology.istio.io/network``
label), else MeshNetworks's: the network whose ``fromRegistry`` names its cluster, else the first
whose ``fromCidr`` holds its address. A proxy's network is its ``NETWORK`` metadata, else the same
MeshNetworks lookup for its IP and ``CLUSTER_ID``. An empty network on either side means "the same
network" (meshplane's decision; Istio sends a proxy without a network to gateways too).

For a proxy on network N, an endpoint on another network M is replaced by M's gateways (MeshNetworks
``gateways``: an ``address``, resolved when it is a DNS name, or the workloads of the service
``registryServiceName``), those of the endpoint's own cluster first: one LbEndpoint per (locality,
gateway) whose weight is the sum of the weights it stands for, with ``tlsMode: istio`` so the
client's auto mTLS (SNI ``outbound_.<port>_.<subset>_.<host>``) runs end to end through the
gateway's AUTO_PASSTHROUGH listener to the callee's sidecar. Endpoints that do not accept Istio
mTLS, unhealthy ones, and those on a network without a gateway are dropped. Weights are scaled by
the least common multiple of the gateway counts (Istio's scale factor) so they split exactly.

A proxy whose ``REQUESTED_NETWORK_VIEW`` metadata lists networks, or a router with an
AUTO_PASSTHROUGH Gateway server (the east-west gateway) on a network, sees only the endpoints of
those networks (or of its own), never another gateway.
"""

from __future__ import annotations

import logging
import math
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from meshplane.pilot.generators.gateway import has_auto_passthrough
from meshplane.pilot.model.config import NETWORK_LABEL, Endpoint
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext

log = logging.getLogger("meshplane.pilot.network")

#: Istio's label naming an endpoint's cluster (set on gateway endpoints, as Istio's AugmentLabels)
CLUSTER_LABEL = "topology.istio.io/cluster"
TLS_MODE_LABEL = "security.istio.io/tlsMode"
#: Node metadata (``ISTIO_META_REQUESTED_NETWORK_VIEW``): the networks whose endpoints a proxy wants
REQUESTED_NETWORK_VIEW = "REQUESTED_NETWORK_VIEW"
#: How long a gateway's resolved DNS name is reused
RESOLVE_TTL = 30.0


@dataclass(frozen=True, order=True)
class Gateway:
    """One address of a network's gateway."""

    network: str
    address: str
    port: int
    cluster_id: str = ""


@dataclass(frozen=True, slots=True)
class Placed:
    """An endpoint as one proxy gets it: its weight there, and whether it is a network's gateway."""

    endpoint: Endpoint
    weight: int
    gateway: bool = False


@dataclass(frozen=True)
class NetworkView:
    """What a proxy sees of the networks: its own, and the only networks it wants (None = all)."""

    network: str = ""
    only: frozenset[str] | None = None

    @property
    def sees_every_network(self) -> bool:
        """A proxy on no network wanting every network gets every endpoint as it is."""
        return not self.network and self.only is None

    @property
    def key(self) -> str:
        """Proxies with the same key get the same endpoints ("" = a proxy on no network)."""
        if self.only is None:
            return self.network
        return f"{self.network}|{','.join(sorted(self.only))}"


def proxy_view(ctx: PushContext, proxy: Proxy) -> NetworkView:
    networks = ctx.mesh.mesh_networks
    network = proxy.network or networks.network_of(proxy.ip, proxy.cluster_id)
    requested = frozenset(n for n in proxy.metadata.get(REQUESTED_NETWORK_VIEW, "").split(",") if n)
    if requested:
        return NetworkView(network, requested)
    if network and proxy.type is ProxyType.ROUTER and has_auto_passthrough(ctx, proxy):
        return NetworkView(network, frozenset({network}))
    return NetworkView(network)


def endpoint_network(ctx: PushContext, ep: Endpoint) -> str:
    return ep.network or ctx.mesh.mesh_networks.network_of(ep.address, ep.cluster_id)


_GATEWAYS: weakref.WeakKeyDictionary[PushContext, dict[str, tuple[Gateway, ...]]] = (
    weakref.WeakKeyDictionary()
)


def network_gateways(ctx: PushContext) -> dict[str, tuple[Gateway, ...]]:
    """Each network's gateways (sorted) in this push context, worked out once per context."""
    found = _GATEWAYS.get(ctx)
    if found is None:
        found = _GATEWAYS[ctx] = _gateways(ctx)
    return found


def _gateways(ctx: PushContext) -> dict[str, tuple[Gateway, ...]]:
    out: dict[str, set[Gateway]] = {}
    for net in ctx.mesh.mesh_networks.networks:
        for gw in net.gateways:
            if gw.address:  # Istio gives these no cluster
                for addr in _resolve(gw.address):
                    out.setdefault(net.name, set()).add(Gateway(net.name, addr, gw.port))
                continue
            svc = ctx.service(gw.registry_service_name)
            if svc is None:
                continue
            for ep in ctx.endpoints(svc.hostname, svc.namespace, gw.port):
                if ep.healthy:
                    out.setdefault(net.name, set()).add(Gateway(net.name, ep.address, ep.port, ep.cluster_id))
    return {name: tuple(sorted(gws)) for name, gws in out.items()}


_RESOLVED: dict[str, tuple[float, tuple[str, ...]]] = {}


def _resolve(address: str) -> tuple[str, ...]:
    """An IP as is; a DNS name's addresses (Istio's RESOLVE_HOSTNAME_GATEWAYS), kept RESOLVE_TTL."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        return (address,)
    except OSError:
        pass
    now = time.monotonic()
    cached = _RESOLVED.get(address)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        infos = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
        addrs = tuple(sorted({str(info[4][0]) for info in infos}))
    except OSError as exc:
        log.warning("MeshNetworks gateway %s: cannot resolve (%s); left out", address, exc)
        addrs = ()
    _RESOLVED[address] = (now + RESOLVE_TTL, addrs)
    return addrs


def scale_factor(gateways: dict[str, tuple[Gateway, ...]]) -> int:
    """The LCM of the gateway counts per network and per (network, cluster)."""
    counts = [len(gws) for gws in gateways.values()]
    for gws in gateways.values():
        per_cluster: dict[str, int] = {}
        for gw in gws:
            per_cluster[gw.cluster_id] = per_cluster.get(gw.cluster_id, 0) + 1
        counts += per_cluster.values()
    return math.lcm(*counts) if counts else 1


def by_network(
    ctx: PushContext, eps: list[Endpoint], view: NetworkView, mtls: Callable[[Endpoint], bool]
) -> list[Placed]:
    """``eps`` as a proxy with ``view`` gets them (``mtls``: whether an endpoint accepts Istio mTLS)."""
    if view.only is not None:
        only = view.only
        eps = [e for e in eps if endpoint_network(ctx, e) in only or not endpoint_network(ctx, e)]
    gateways = network_gateways(ctx)
    scale = scale_factor(gateways)
    out: list[Placed] = []
    shares: dict[tuple[str, Gateway], int] = {}
    for ep in eps:
        net = endpoint_network(ctx, ep)
        if not net or not view.network or net == view.network:
            out.append(Placed(ep, ep.weight * scale))
            continue
        chosen = _gateways_for(gateways.get(net, ()), ep.cluster_id)
        if not chosen or not ep.healthy or not mtls(ep):
            continue
        for gw in chosen:
            key = (ep.locality, gw)
            shares[key] = shares.get(key, 0) + ep.weight * scale // len(chosen)
    for (locality, gw), weight in sorted(shares.items()):
        labels = {NETWORK_LABEL: gw.network, TLS_MODE_LABEL: "istio"}
        if gw.cluster_id:
            labels[CLUSTER_LABEL] = gw.cluster_id
        gw_ep = Endpoint(
            gw.address, gw.port, labels, locality, weight, network=gw.network, cluster_id=gw.cluster_id
        )
        out.append(Placed(gw_ep, weight, gateway=True))
    return out


def _gateways_for(gateways: tuple[Gateway, ...], cluster_id: str) -> tuple[Gateway, ...]:
    """The gateways of the endpoint's own cluster when it has some, else all of the network's."""
    own = tuple(g for g in gateways if cluster_id and g.cluster_id == cluster_id)
    return own or gateways
