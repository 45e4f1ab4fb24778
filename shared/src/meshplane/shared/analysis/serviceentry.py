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


def check_addresses(ctx: Context) -> None:
    md = _proxy_metadata(ctx)
    if str(md.get("ISTIO_META_DNS_CAPTURE", "")).lower() != "true":
        return
    if str(md.get("ISTIO_META_DNS_AUTO_ALLOCATE", "")).lower() == "true":
        return
    for se in ctx.kind("ServiceEntry"):
        if se.spec.get("addresses"):
            continue
        if any(str(p.get("protocol") or "TCP").upper() == "TCP" for p in mappings(se.spec.get("ports"))):
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
