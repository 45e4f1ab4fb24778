"""CDS: outbound service/subset clusters, inbound clusters, BlackHole and Passthrough."""

from __future__ import annotations

import dataclasses
import ipaddress

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshplane.pilot.generators.common import (
    BLACKHOLE,
    INBOUND_PASSTHROUGH,
    INBOUND_PASSTHROUGH_SOURCE,
    PASSTHROUGH,
    ads_source,
    duration,
    endpoint_address,
    istio_metadata,
    outbound,
    pack,
)
from meshplane.pilot.generators.gateway import sni_dnat_clusters
from meshplane.pilot.generators.policy import UpstreamTls, apply_policy, merged_policy
from meshplane.pilot.generators.security.mtls import apply_auto_mtls
from meshplane.pilot.generators.security.sds import retarget_clusters
from meshplane.pilot.model.config import Config, Port, Service, given
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config.models import DestinationRule

#: Config kinds whose change can alter clusters.
KINDS = frozenset({"DestinationRule", "ServiceEntry", "Sidecar", "WorkloadEntry", "Gateway"})


def _lb_endpoint(host: str, port: int) -> endpoint_components_pb2.LbEndpoint:
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=endpoint_address(host, port))
    )


def _base(name: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name)
    c.connect_timeout.CopyFrom(duration("10s"))
    return c


def _http2(cluster: cluster_pb2.Cluster) -> None:
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    opts.explicit_http_config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].CopyFrom(pack(opts))


def service_cluster(
    svc: Service,
    port: Port,
    subset: str,
    dr: Config[DestinationRule] | None,
    ctx: PushContext | None = None,
    gateway: bool = False,
) -> cluster_pb2.Cluster:
    name = outbound(port.number, subset, svc.hostname)
    c = _base(name)
    if svc.resolution in ("DNS", "DNS_ROUND_ROBIN"):
        c.type = (
            cluster_pb2.Cluster.STRICT_DNS if svc.resolution == "DNS" else cluster_pb2.Cluster.LOGICAL_DNS
        )
        c.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        group = endpoint_components_pb2.LocalityLbEndpoints()
        group.load_balancing_weight.value = 1
        subset_labels = _subset_labels(dr, subset)
        targets = [
            (a, ports.get(port.name) or port.target_port or port.number, labels)
            for a, ports, labels, _loc, _w in svc.static_endpoints
        ]
        if not targets:
            targets = [(svc.hostname, port.target_port or port.number, {})]
        if any(a.startswith("unix://") for a, _, _ in targets):
            # Envoy resolves only socket addresses in DNS clusters: Unix sockets need a STATIC one
            c.type = cluster_pb2.Cluster.STATIC
            targets = [t for t in targets if t[0].startswith("unix://") or _is_ip(t[0])]
        for address, target, labels in targets:
            if all(labels.get(k) == v for k, v in subset_labels.items()):
                group.lb_endpoints.append(_lb_endpoint(address, target))
        if c.type == cluster_pb2.Cluster.LOGICAL_DNS:
            del group.lb_endpoints[1:]  # Envoy takes exactly one address to resolve (Istio: the first)
        cla.endpoints.append(group)
        c.load_assignment.CopyFrom(cla)
    elif svc.resolution == "NONE":
        c.type = cluster_pb2.Cluster.ORIGINAL_DST
        c.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    else:
        c.type = cluster_pb2.Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(ads_source())
        c.eds_cluster_config.service_name = name
    if port.protocol.upper() in ("HTTP2", "GRPC", "GRPC_WEB"):
        _http2(c)
    sni = f"outbound_.{port.number}_.{subset}_.{svc.hostname}"
    policy = merged_policy(dr.spec if dr else None, port.number, subset)
    if svc.resolution == "NONE":
        policy = dataclasses.replace(policy, load_balancer=None)
    http2 = port.protocol.upper() in ("HTTP2", "GRPC", "GRPC_WEB")
    mesh_locality = ctx.mesh.traffic.locality_lb_setting if ctx and svc.resolution != "NONE" else None
    apply_policy(c, policy, sni, _upstream_tls(svc, dr, gateway, http2, port.is_http), mesh_locality)
    apply_auto_mtls(c, ctx, svc, port.number, sni, bool(policy.tls and policy.tls.mode))
    c.metadata.CopyFrom(istio_metadata([dr] if dr else []))
    c.metadata.filter_metadata["istio"].fields["services"].list_value.values.add().struct_value.fields[
        "host"
    ].string_value = svc.hostname
    return c


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _upstream_tls(
    svc: Service, dr: Config[DestinationRule] | None, gateway: bool, http2: bool, http: bool
) -> UpstreamTls:
    """SIMPLE/MUTUAL defaults: SNI is the host (none for wildcards; HTTP ports take it from each
    request's Host, as Istio's auto SNI); ``credentialName`` is honoured
    for gateways, and for sidecars only under a DestinationRule with a ``workloadSelector``."""
    selected = bool(dr and given(dr.spec.workload_selector))
    where = f"DestinationRule {dr.namespace}/{dr.name}" if dr else ""
    sni = "" if svc.hostname.startswith("*") else svc.hostname
    return UpstreamTls(sni=sni, credential_allowed=gateway or selected, where=where, http2=http2, http=http)


def _subset_labels(dr: Config[DestinationRule] | None, subset: str) -> dict[str, str]:
    if not dr or not subset:
        return {}
    for sub in dr.spec.subsets or []:
        if sub.name == subset:
            return dict(sub.labels or {})
    return {}


def outbound_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    out: list[cluster_pb2.Cluster] = []
    gateway = proxy.type is not ProxyType.SIDECAR
    for svc in ctx.services_for(proxy):
        dr = ctx.destination_rule(proxy.namespace, svc.hostname)
        subsets = [s.name for s in dr.spec.subsets or []] if dr else []
        for port in svc.ports:
            built = [service_cluster(svc, port, s, dr, ctx, gateway) for s in ["", *subsets]]
            out.extend(c for c in built if _has_endpoints(c))
    return out


def _has_endpoints(cluster: cluster_pb2.Cluster) -> bool:
    """Whether a cluster that carries its own endpoints has any. As Istio, none is built without:
    a subset whose labels no endpoint of a DNS ServiceEntry has (Envoy rejects a LOGICAL_DNS
    cluster without its one address)."""
    if not cluster.HasField("load_assignment"):
        return True
    return any(group.lb_endpoints for group in cluster.load_assignment.endpoints)


def inbound_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """``inbound|<port>||`` clusters to the app, from Sidecar ingress or the proxy's services."""
    out: dict[str, cluster_pb2.Cluster] = {}
    scope = ctx.sidecar_scope(proxy)
    if scope.ingress:
        for ing in scope.ingress:
            port = (ing.port.number if ing.port else None) or 0
            target = ing.default_endpoint or f"127.0.0.1:{port}"
            out[f"inbound|{port}||"] = _static_cluster(f"inbound|{port}||", target, port)
    else:
        for svc in ctx.workloads_for(proxy):
            for p in svc.ports:
                for ep in ctx.endpoints(svc.hostname, svc.namespace, p.number):
                    if ep.address in proxy.instance_ips:
                        name = f"inbound|{ep.port}||"
                        out[name] = _static_cluster(name, f"127.0.0.1:{ep.port}", ep.port)
    return list(out.values())


def _static_cluster(name: str, target: str, port: int) -> cluster_pb2.Cluster:
    c = _base(name)
    c.type = cluster_pb2.Cluster.STATIC
    host, _, p = target.rpartition(":")
    if target.startswith("unix://"):
        ep = _lb_endpoint(target, 0)
    else:
        ep = _lb_endpoint(host or "127.0.0.1", int(p) if p.isdigit() else port)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    cla.endpoints.add().lb_endpoints.append(ep)
    c.load_assignment.CopyFrom(cla)
    return c


def special_clusters() -> list[cluster_pb2.Cluster]:
    blackhole = _base(BLACKHOLE)
    blackhole.type = cluster_pb2.Cluster.STATIC
    passthrough = _base(PASSTHROUGH)
    passthrough.type = cluster_pb2.Cluster.ORIGINAL_DST
    passthrough.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    inbound = _base(INBOUND_PASSTHROUGH)
    inbound.type = cluster_pb2.Cluster.ORIGINAL_DST
    inbound.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    # Under iptables capture the proxy's connection to its own pod IP would be sent back to 15006
    # (the ``-o lo ! -d 127.0.0.1 --uid-owner 1337`` rule); the capture rules let traffic from
    # 127.0.0.6 through first, so this cluster connects from there, as Istio's does.
    inbound.upstream_bind_config.source_address.CopyFrom(
        address_pb2.SocketAddress(address=INBOUND_PASSTHROUGH_SOURCE, port_value=0)
    )
    return [blackhole, passthrough, inbound]


def shared_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """Outbound and special clusters: identical for every proxy of one scope."""
    outbound = outbound_clusters(ctx, proxy)
    clusters = outbound + sni_dnat_clusters(ctx, proxy, outbound) + special_clusters()
    retarget_clusters(proxy, clusters)
    return clusters


def own_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """Inbound clusters: this proxy's own workload ports."""
    clusters = inbound_clusters(ctx, proxy) if proxy.type is ProxyType.SIDECAR else []
    retarget_clusters(proxy, clusters)
    return clusters


def build_clusters(ctx: PushContext, proxy: Proxy) -> list[cluster_pb2.Cluster]:
    """Every cluster for a proxy, in a stable order."""
    return shared_clusters(ctx, proxy) + own_clusters(ctx, proxy)
