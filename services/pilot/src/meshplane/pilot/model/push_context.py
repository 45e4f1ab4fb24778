"""The push context: one immutable snapshot of config + registry with the indexes generators use.

Built from the current bus state (``build_push_context``); every lookup a generator needs
(services a proxy sees, VirtualServices for a host, the DestinationRule for a host, endpoints
of a subset, the Sidecar and Gateways that apply to a proxy) is answered here without I/O.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar, cast

from pydantic import BaseModel

from meshplane.pilot.model.config import (
    KIND_OF,
    NETWORK_LABEL,
    AnyConfig,
    Config,
    Endpoint,
    Service,
    Workload,
    fqdn,
    given,
    host_matches,
    labels_match,
    visible,
)
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.service_entry import service_entry_services, with_sans
from meshplane.pilot.model.workload_entry import workload_from_spec
from meshplane.shared.config import models
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE, MeshConfig

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class SidecarScope:
    """The Sidecar that applies to a proxy (or none)."""

    config: Config[models.Sidecar] | None
    outbound_traffic_policy: str  # ALLOW_ANY | REGISTRY_ONLY

    @property
    def egress(self) -> list[models.IstioEgressListener]:
        return list(self.config.spec.egress or []) if self.config else []

    def egress_hosts(self, port: int | None = None) -> list[str]:
        """The hosts the egress imports: on ``port``, those of the egress listener for that port,
        else of the listeners without a port (so ``0``: only those); ``None``: every listener's."""
        listeners = self.egress
        if port is not None:
            own = [eg for eg in listeners if eg.port is not None and eg.port.number == port]
            listeners = own or [eg for eg in listeners if eg.port is None or not eg.port.number]
        return [h for eg in listeners for h in eg.hosts or []]

    @property
    def ingress(self) -> list[models.IstioIngressListener]:
        return list(self.config.spec.ingress or []) if self.config else []


def _egress_allows(hosts: Iterable[str], proxy_ns: str, svc: Service) -> bool:
    for entry in hosts:
        ns, sep, host = entry.partition("/")
        if not sep:
            ns, host = "*", entry
        if ns == ".":
            ns = proxy_ns
        if ns not in ("*", svc.namespace):
            continue
        if host_matches(host, svc.hostname):
            return True
    return False


def _of_kind(configs: Mapping[str, Sequence[AnyConfig]], model: type[M]) -> tuple[Config[M], ...]:
    # the configs of a kind were built with its model (``typed_spec``), so the cast holds
    return cast("tuple[Config[M], ...]", tuple(configs.get(KIND_OF[model], ())))


@dataclass(frozen=True, eq=False)
class PushContext:
    """One version of config and registry, shared by every push of that version.

    Frozen: no field can be rebound, and the collections are tuples and read-only mappings. A
    value that arrives later (fetched JWKS documents) makes a new context (``with_jwks``). The
    lookup memos below are filled on first use and hold only what the fields already determine.
    """

    version: str
    configs: Mapping[str, tuple[AnyConfig, ...]] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    _by_host: Mapping[str, tuple[Service, ...]] = field(default_factory=dict)
    _endpoints: Mapping[tuple[str, str], Mapping[int, list[Endpoint]]] = field(default_factory=dict)
    #: JWKS documents Pilot fetched for RequestAuthentication ``jwksUri`` (uri → JSON text).
    jwks: Mapping[str, str] = field(default_factory=dict)
    #: MeshConfig ``rootNamespace``: mesh-wide Sidecar, DestinationRule and security policies
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    #: the MeshConfig Pilot was started with (access logging; see ``meshplane.shared.meshconfig``)
    mesh: MeshConfig = MeshConfig()
    #: DestinationRule lookups by (viewer namespace, host), filled on first use (a scan of every
    #: rule per lookup made CDS and EDS O(services x rules) per push); never shared by ``replace``.
    _dr_memo: dict[tuple[str, str], Config[models.DestinationRule] | None] = field(
        default_factory=dict, init=False, repr=False
    )

    def with_jwks(self, jwks: Mapping[str, str]) -> PushContext:
        """This context with ``jwks`` as its fetched JWKS documents."""
        return dataclasses.replace(self, jwks=MappingProxyType(dict(jwks)))

    @functools.cached_property
    def _by_address(self) -> dict[str, list[tuple[int, tuple[str, str]]]]:
        """Endpoint address → (hostname, namespace) keys, built on first use."""
        by_address: dict[str, list[tuple[int, tuple[str, str]]]] = {}
        for i, (key, by_port) in enumerate(self._endpoints.items()):
            for addr in {e.address for eps in by_port.values() for e in eps}:
                by_address.setdefault(addr, []).append((i, key))
        return by_address

    # ---- lookups -------------------------------------------------------------------------
    def of_kind(self, model: type[M]) -> tuple[Config[M], ...]:
        """The configs whose spec is a ``model`` (the configs of its kind)."""
        # asked per proxy and part by several stages (tens of thousands of calls per push): one
        # lookup, as ``configs`` holds tuples built with each kind's model (see ``_of_kind``)
        return self.configs.get(KIND_OF[model], ())  # type: ignore[return-value]

    def service(self, hostname: str, viewer_ns: str | None = None) -> Service | None:
        candidates: Sequence[Service] = self._by_host.get(hostname, ())
        if viewer_ns is not None:
            candidates = [s for s in candidates if visible(s.export_to, s.namespace, viewer_ns)]
        if viewer_ns is not None:
            same = [s for s in candidates if s.namespace == viewer_ns]
            if same:
                return same[0]
        return candidates[0] if candidates else None

    def sidecar_scope(self, proxy: Proxy) -> SidecarScope:
        chosen: Config[models.Sidecar] | None = None
        sidecars = self.of_kind(models.Sidecar)
        in_ns = [c for c in sidecars if c.namespace == proxy.namespace]
        for cfg in in_ns:
            selector = cfg.spec.workload_selector
            if selector and selector.labels and labels_match(selector.labels, proxy.labels):
                chosen = cfg
                break
        if chosen is None:
            chosen = next((c for c in in_ns if not given(c.spec.workload_selector)), None)
        if chosen is None:
            chosen = next(
                (
                    c
                    for c in sidecars
                    if c.namespace == self.root_namespace and not given(c.spec.workload_selector)
                ),
                None,
            )
        policy = self.mesh.traffic.outbound_traffic_policy  # MeshConfig's, unless the Sidecar's
        if chosen is not None and chosen.spec.outbound_traffic_policy is not None:
            mode = chosen.spec.outbound_traffic_policy.mode
            if mode:
                policy = mode.value
        return SidecarScope(chosen, policy)

    def services_for(
        self, proxy: Proxy, scope: SidecarScope | None = None, port: int | None = None
    ) -> list[Service]:
        """Services a proxy may reach: visible by exportTo, then narrowed by Sidecar egress hosts
        (as Istio, per egress port: see :meth:`SidecarScope.egress_hosts`)."""
        scope = scope or self.sidecar_scope(proxy)
        out = [s for s in self.services if visible(s.export_to, s.namespace, proxy.namespace)]
        if scope.config is not None and proxy.type.value == "sidecar" and scope.egress:
            hosts = scope.egress_hosts(port)
            out = [s for s in out if _egress_allows(hosts, proxy.namespace, s)]
        return out

    def virtual_services(self, viewer_ns: str, gateway: str | None) -> list[Config[models.VirtualService]]:
        """VirtualServices visible in ``viewer_ns`` bound to ``gateway`` (None = the mesh)."""
        out = []
        for vs in self.of_kind(models.VirtualService):
            if not visible(
                vs.export_to or self.mesh.traffic.default_virtual_service_export_to, vs.namespace, viewer_ns
            ):
                continue
            gateways = [fqdn_gateway(g, vs.namespace) for g in vs.spec.gateways or ["mesh"]]
            if gateway is None and "mesh" in gateways or gateway is not None and gateway in gateways:
                out.append(vs)
        return out

    def delegate(self, name: str, namespace: str) -> Config[models.VirtualService] | None:
        return next(
            (c for c in self.of_kind(models.VirtualService) if c.name == name and c.namespace == namespace),
            None,
        )

    def destination_rule(self, viewer_ns: str, host: str) -> Config[models.DestinationRule] | None:
        """Istio's lookup order: the viewer's namespace, the service's namespace, the root namespace."""
        key = (viewer_ns, host)
        if key not in self._dr_memo:
            self._dr_memo[key] = self._find_destination_rule(viewer_ns, host)
        return self._dr_memo[key]

    def _find_destination_rule(self, viewer_ns: str, host: str) -> Config[models.DestinationRule] | None:
        svc = self.service(host)
        order = [viewer_ns, svc.namespace if svc else "", self.root_namespace]
        rules = self.of_kind(models.DestinationRule)
        default = self.mesh.traffic.default_destination_rule_export_to
        for ns in order:
            for dr in rules:
                if dr.namespace != ns or not visible(dr.export_to or default, dr.namespace, viewer_ns):
                    continue
                if host_matches(fqdn(dr.spec.host or "", dr.namespace), host):
                    return dr
        return None

    def gateways_for(self, proxy: Proxy) -> list[Config[models.Gateway]]:
        """Gateways whose selector matches this proxy; none for a sidecar, whatever its labels."""
        if proxy.type is not ProxyType.ROUTER:
            return []
        out = []
        for gw in self.of_kind(models.Gateway):
            if labels_match(gw.spec.selector or {}, proxy.labels):
                out.append(gw)
        return out

    def endpoints(
        self, hostname: str, namespace: str, port: int, subset: dict[str, str] | None = None
    ) -> list[Endpoint]:
        eps = self._endpoints.get((hostname, namespace), {}).get(port, [])
        if subset:
            eps = [e for e in eps if labels_match(subset, e.labels)]
        return eps

    def workloads_for(self, proxy: Proxy) -> list[Service]:
        """Services whose instances include this proxy's IP (for its inbound listeners)."""
        keys = {k for ip in proxy.instance_ips for k in self._by_address.get(ip, ())}
        out = []
        for _, (host, ns) in sorted(keys):
            svc = self.service(host)
            if svc is not None and svc.namespace == ns:
                out.append(svc)
        return out


def fqdn_gateway(name: str, namespace: str) -> str:
    """Gateway references: ``mesh``, ``ns/name`` or ``name`` (same namespace as the VirtualService)."""
    if name == "mesh" or "/" in name:
        return name
    if "." in name:  # name.namespace.svc.cluster.local form
        gw, ns = name.split(".", 2)[:2]
        return f"{ns}/{gw}"
    return f"{namespace}/{name}"


def _index_endpoints(
    services: list[Service], workloads: list[Workload]
) -> dict[tuple[str, str], dict[int, list[Endpoint]]]:
    """Endpoints per (hostname, namespace) and service port: one pass over the workloads, which
    name the hosts they belong to, plus a per-namespace scan for services with a selector."""
    by_host: dict[str, list[Workload]] = {}
    by_ns: dict[str, list[Workload]] = {}
    order: dict[int, int] = {}
    for i, wl in enumerate(workloads):
        order[id(wl)] = i
        for host in wl.services:
            by_host.setdefault(host, []).append(wl)
        by_ns.setdefault(wl.namespace, []).append(wl)
    out: dict[tuple[str, str], dict[int, list[Endpoint]]] = {}
    for svc in services:
        by_port: dict[int, list[Endpoint]] = {p.number: [] for p in svc.ports}
        for address, ports, labels, locality, weight in svc.static_endpoints:
            for p in svc.ports:
                target = ports.get(p.name) or p.target_port or p.number
                by_port[p.number].append(
                    Endpoint(address, target, labels, locality, weight, network=labels.get(NETWORK_LABEL, ""))
                )
        if svc.resolution != "DNS" or not svc.static_endpoints:
            members = by_host.get(svc.hostname, [])
            if svc.selector:
                named = {id(w) for w in members}
                members = members + [
                    w
                    for w in by_ns.get(svc.namespace, [])
                    if id(w) not in named and labels_match(svc.selector, w.labels)
                ]
                members.sort(key=lambda w: order[id(w)])
            for wl in members:
                for p in svc.ports:
                    target = wl.ports.get(p.name) or p.target_port or p.number
                    by_port[p.number].append(
                        Endpoint(
                            wl.address,
                            target,
                            wl.labels,
                            wl.locality,
                            wl.weight,
                            wl.healthy,
                            wl.service_account,
                            wl.network,
                            wl.cluster_id,
                        )
                    )
        out[(svc.hostname, svc.namespace)] = by_port
    return out


def build_push_context(
    version: str,
    configs: Mapping[str, AnyConfig],
    services: Mapping[str, Service],
    workloads: Mapping[str, Workload],
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
    mesh: MeshConfig | None = None,
    *,
    workload_entries: bool = True,
) -> PushContext:
    """Index the current state. Services from ServiceEntries are added unless the registry has them;
    WorkloadEntries too, unless ``workload_entries`` is off (PILOT_ENABLE_WORKLOAD_ENTRY=false)."""
    by_kind: dict[str, list[AnyConfig]] = {}
    for cfg in sorted(configs.values(), key=lambda c: (c.kind, c.namespace, c.name)):
        by_kind.setdefault(cfg.kind, []).append(cfg)
    entries = {f"ServiceEntry/{se.namespace}/{se.name}": se for se in _of_kind(by_kind, models.ServiceEntry)}
    svc_list = sorted(
        (with_sans(s, entries) for s in services.values()), key=lambda s: (s.hostname, s.namespace)
    )
    known = {(s.hostname, s.namespace) for s in svc_list}
    for se in _of_kind(by_kind, models.ServiceEntry):
        for svc in service_entry_services(se):
            if (svc.hostname, svc.namespace) not in known:
                svc_list.append(svc)
                known.add((svc.hostname, svc.namespace))
    mesh = mesh or MeshConfig(root_namespace=root_namespace)
    if (exported := mesh.traffic.default_service_export_to) != ("*",):  # MeshConfig defaultServiceExportTo
        svc_list = [s if s.export_to else dataclasses.replace(s, export_to=exported) for s in svc_list]
    wl_list = list(workloads.values())
    wl_names = {(w.namespace, w.name) for w in wl_list}
    for we in _of_kind(by_kind, models.WorkloadEntry) if workload_entries else ():
        if (we.namespace, we.name) not in wl_names:
            wl_list.append(workload_from_spec(we.name, we.namespace, we.spec))
    by_host: dict[str, list[Service]] = {}
    for svc in svc_list:
        by_host.setdefault(svc.hostname, []).append(svc)
    return PushContext(
        version=version,
        configs=MappingProxyType({kind: tuple(cfgs) for kind, cfgs in by_kind.items()}),
        services=tuple(svc_list),
        workloads=tuple(wl_list),
        _by_host={host: tuple(svcs) for host, svcs in by_host.items()},
        _endpoints=_index_endpoints(svc_list, wl_list),
        root_namespace=root_namespace,
        mesh=mesh,
    )
