"""EDS: one ClusterLoadAssignment per EDS cluster name, shared by every proxy that asks for it
(reshaped per proxy locality by ``locality`` when the cluster uses locality load balancing)."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from meshplane.pilot.generators.common import ClusterKey, endpoint_address
from meshplane.pilot.generators.locality import split_locality
from meshplane.pilot.generators.security.mtls import endpoint_metadata
from meshplane.pilot.model.config import Endpoint
from meshplane.pilot.model.push_context import PushContext


def _locality(text: str) -> base_pb2.Locality:
    region, zone, subzone = split_locality(text)
    return base_pb2.Locality(region=region, zone=zone, sub_zone=subzone)


def build_load_assignment(
    ctx: PushContext, cluster_name: str, rank: Callable[[Endpoint], int] | None = None
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of ``outbound|port|subset|host``; empty (not missing) when none are known.
    With ``rank``, endpoints are grouped by (rank, locality) and each group's priority is its rank."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
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
    by_locality: dict[tuple[int, str], list[Endpoint]] = {}
    for ep in ctx.endpoints(svc.hostname, svc.namespace, key.port, subset_labels):
        by_locality.setdefault((rank(ep) if rank else 0, ep.locality), []).append(ep)
    for priority, locality in sorted(by_locality):
        group = cla.endpoints.add(priority=priority)
        group.locality.CopyFrom(_locality(locality))  # always present: gRPC clients require it
        eps = by_locality[(priority, locality)]
        group.load_balancing_weight.value = sum(e.weight for e in eps)
        for ep in sorted(eps, key=lambda e: (e.address, e.port)):
            lb = endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=endpoint_address(ep.address, ep.port)),
                health_status=health_check_pb2.HEALTHY if ep.healthy else health_check_pb2.UNHEALTHY,
            )
            lb.load_balancing_weight.value = ep.weight
            tls_md = endpoint_metadata(ctx, ep, svc.namespace)
            if tls_md is not None:
                lb.metadata.CopyFrom(tls_md)
            group.lb_endpoints.append(lb)
    return cla
