"""EDS: one ClusterLoadAssignment per EDS cluster name, shared by every proxy that asks for it
(reshaped per proxy locality by ``locality`` when the cluster uses locality load balancing, and
per proxy network by ``network`` when endpoints sit on other networks).

An SNI-DNAT cluster (a gateway's ``outbound_.<port>_.<subset>_.<host>``) gets only the endpoints
that accept Istio mTLS (Istio's EndpointsWithMTLSFilter): the client's mTLS passes through it."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from meshplane.pilot.generators.common import ClusterKey, endpoint_address
from meshplane.pilot.generators.locality import split_locality
from meshplane.pilot.generators.network import NetworkView, Placed, by_network
from meshplane.pilot.generators.security.mtls import endpoint_metadata, istio_mtls_metadata
from meshplane.pilot.model.config import Endpoint
from meshplane.pilot.model.push_context import PushContext


def _locality(text: str) -> base_pb2.Locality:
    region, zone, subzone = split_locality(text)
    return base_pb2.Locality(region=region, zone=zone, sub_zone=subzone)


def build_load_assignment(
    ctx: PushContext,
    cluster_name: str,
    rank: Callable[[Endpoint], int] | None = None,
    view: NetworkView | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of ``outbound|port|subset|host``; empty (not missing) when none are known.
    With ``rank``, endpoints are grouped by (rank, locality) and each group's priority is its rank.
    With ``view`` (the asking proxy's networks), other networks' endpoints become their gateways."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    dnat = ClusterKey.parse(cluster_name) is None
    key = ClusterKey.parse(cluster_name) or ClusterKey.parse_sni(cluster_name)  # SNI form: gateway SNI-DNAT
    if key is None or key.direction != "outbound":
        return cla
    svc = ctx.service(key.host)
    if svc is None:
        return cla
    subset_labels: dict[str, str] = {}
    if key.subset:
        dr = ctx.destination_rule(svc.namespace, svc.hostname)
        for sub in (dr.spec.subsets or []) if dr else []:
            if sub.name == key.subset:
                subset_labels = dict(sub.labels or {})
                break
        else:
            return cla
    all_eps = ctx.endpoints(svc.hostname, svc.namespace, key.port, subset_labels)
    tls_md = {id(ep): endpoint_metadata(ctx, ep, svc.namespace) for ep in all_eps}
    eps = [ep for ep in all_eps if not dnat or tls_md[id(ep)] is not None]
    if view is None or view.sees_every_network:
        items = [Placed(ep, ep.weight) for ep in eps]
    else:
        items = by_network(ctx, eps, view, lambda ep: tls_md[id(ep)] is not None)
    by_locality: dict[tuple[int, str], list[Placed]] = {}
    for item in items:
        by_locality.setdefault((rank(item.endpoint) if rank else 0, item.endpoint.locality), []).append(item)
    for priority, locality in sorted(by_locality):
        group = cla.endpoints.add(priority=priority)
        group.locality.CopyFrom(_locality(locality))  # always present: gRPC clients require it
        members = by_locality[(priority, locality)]
        group.load_balancing_weight.value = sum(m.weight for m in members)
        for item in sorted(members, key=lambda m: (m.endpoint.address, m.endpoint.port)):
            ep = item.endpoint
            lb = endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=endpoint_address(ep.address, ep.port)),
                health_status=health_check_pb2.HEALTHY if ep.healthy else health_check_pb2.UNHEALTHY,
            )
            lb.load_balancing_weight.value = item.weight
            md = istio_mtls_metadata() if item.gateway else tls_md.get(id(ep))
            if md is not None:
                lb.metadata.CopyFrom(md)
            group.lb_endpoints.append(lb)
    return cla
