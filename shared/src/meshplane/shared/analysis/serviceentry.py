"""ServiceEntry and mesh-network analyzers: TCP ports without addresses while DNS capture is on
and auto-allocation off (IST0134), one host and port with different protocols (IST0177), and
meshNetworks registries nobody knows (IST0126)."""

from __future__ import annotations

from collections.abc import Mapping

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, mappings, strs

LOCAL_CLUSTER = "Kubernetes"
MULTICLUSTER_LABEL = "istio/multiCluster"


def _proxy_metadata(ctx: Context) -> Mapping[str, object]:
    default = ctx.mesh_config.get("defaultConfig")
    md = default.get("proxyMetadata") if isinstance(default, Mapping) else None
    return md if isinstance(md, Mapping) else {}


def _auto_allocated(ctx: Context) -> bool:
    """Whether MeshConfig turns on DNS capture with address auto-allocation (either flag)."""
    md = _proxy_metadata(ctx)
    if str(md.get("ISTIO_META_DNS_CAPTURE", "")) != "true":
        return False
    return any(
        str(md.get(k, "")) == "true" for k in ("ISTIO_META_DNS_AUTO_ALLOCATE", "PILOT_ENABLE_IP_AUTOALLOCATE")
    )


def _status_addresses(se: Resource) -> bool:
    status = se.obj.get("status")
    return isinstance(status, Mapping) and bool(status.get("addresses"))


def check_addresses(ctx: Context) -> None:
    """IST0134, once per TCP (or protocol-less) port of a ServiceEntry without addresses, unless the
    controller allocated some (``status.addresses``) or MeshConfig auto-allocates them."""
    if _auto_allocated(ctx):
        return
    for se in ctx.kind("ServiceEntry"):
        if se.spec.get("addresses") or _status_addresses(se):
            continue
        for port in mappings(se.spec.get("ports")):
            if str(port.get("protocol") or "TCP").upper() == "TCP":
                ctx.report(
                    m.SERVICE_ENTRY_ADDRESSES_REQUIRED,
                    se,
                    "ServiceEntry addresses are required for this protocol.",
                )


def check_mesh_networks(ctx: Context) -> None:
    networks = ctx.mesh_networks.get("networks")
    if not isinstance(networks, Mapping):
        return
    known = {str(ctx.mesh_config.get("clusterName") or LOCAL_CLUSTER), LOCAL_CLUSTER}
    for secret in ctx.kind("Secret"):
        if (
            secret.namespace == ctx.root_namespace
            and secret.str_map("labels").get(MULTICLUSTER_LABEL) == "true"
        ):
            data = secret.obj.get("data") or secret.obj.get("stringData")
            if isinstance(data, Mapping):
                known.update(str(k) for k in data)
    holder = Resource("", "MeshNetworks", ctx.root_namespace, "meshnetworks", dict(ctx.mesh_networks))
    for network, spec in sorted(networks.items()):
        for ep in mappings(spec.get("endpoints") if isinstance(spec, Mapping) else None):
            registry = ep.get("fromRegistry")
            if registry and str(registry) not in known:
                ctx.report(
                    m.UNKNOWN_MESH_NETWORKS_REGISTRY,
                    holder,
                    f"Unknown service registry {registry} in network {network}",
                )


def check_protocol_conflicts(ctx: Context) -> None:
    """IST0177: ServiceEntries that give one host and port different protocols."""
    claims: dict[tuple[str, int], dict[str, tuple[Resource, str]]] = {}
    for se in ctx.kind("ServiceEntry"):
        for port in mappings(se.spec.get("ports")):
            number = port.get("number")
            if not isinstance(number, int):
                continue
            protocol = str(port.get("protocol") or "TCP").upper()
            for host in strs(se.spec.get("hosts")):
                claims.setdefault((host, number), {})[f"{se.namespace}/{se.name}"] = (se, protocol)
    for (host, number), owners in sorted(claims.items()):
        protocols = sorted({protocol for _, protocol in owners.values()})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted(owners))
        for se, _ in owners.values():
            ctx.report(
                m.CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                se,
                f'Multiple ServiceEntries ({names}) define the same host "{host}" and port {number} with '
                f"conflicting protocols ({', '.join(protocols)}).",
            )
