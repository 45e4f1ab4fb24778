"""DestinationRule traffic policy → Envoy cluster settings (lb, connection pool, outlier, TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshplane.pilot.generators.common import duration, pack
from meshplane.pilot.generators.security.mtls import istio_mutual
from meshplane.pilot.generators.security.upstream_tls import upstream_tls

Policy = dict[str, Any]

_SIMPLE_LB = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_CONN": cluster_pb2.Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
    "PASSTHROUGH": cluster_pb2.Cluster.CLUSTER_PROVIDED,
    "UNSPECIFIED": cluster_pb2.Cluster.ROUND_ROBIN,
}


def merged_policy(dr_spec: dict[str, Any] | None, port: int, subset: str) -> Policy:
    """The traffic policy for (port, subset): top level, then port level, then subset overrides."""
    if not dr_spec:
        return {}
    policy: Policy = dict(dr_spec.get("trafficPolicy") or {})
    for pls in policy.pop("portLevelSettings", None) or []:
        if int((pls.get("port") or {}).get("number", -1)) == port:
            policy.update({k: v for k, v in pls.items() if k != "port"})
    if subset:
        for sub in dr_spec.get("subsets") or []:
            if sub.get("name") == subset:
                sub_policy = dict(sub.get("trafficPolicy") or {})
                for pls in sub_policy.pop("portLevelSettings", None) or []:
                    if int((pls.get("port") or {}).get("number", -1)) == port:
                        sub_policy.update({k: v for k, v in pls.items() if k != "port"})
                policy.update(sub_policy)
    return policy


@dataclass(frozen=True)
class UpstreamTls:
    """What SIMPLE/MUTUAL TLS needs beyond the policy: the default SNI (empty: none), whether
    ``credentialName`` may be used for this proxy, and the rule's name for warnings."""

    sni: str = ""
    credential_allowed: bool = True
    where: str = ""
    #: the cluster speaks HTTP/2 (Istio then offers ALPN ``h2``, which gRPC servers require)
    http2: bool = False
    #: the cluster carries HTTP: without ``sni``, SNI comes from each request's Host (Istio's
    #: ENABLE_AUTO_SNI) and, without ``subjectAltNames``, the certificate must match it
    http: bool = False


def apply_policy(
    cluster: cluster_pb2.Cluster, policy: Policy, sni: str, upstream: UpstreamTls | None = None
) -> None:
    """Mutate a freshly built cluster according to a merged traffic policy."""
    lb = policy.get("loadBalancer") or {}
    if "simple" in lb:
        cluster.lb_policy = _SIMPLE_LB.get(str(lb["simple"]).upper(), cluster_pb2.Cluster.ROUND_ROBIN)
    if "consistentHash" in lb:
        ch = lb["consistentHash"] or {}
        if "maglev" in ch:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
        else:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            size = int((ch.get("ringHash") or {}).get("minimumRingSize") or ch.get("minimumRingSize") or 1024)
            cluster.ring_hash_lb_config.minimum_ring_size.value = size
    locality = lb.get("localityLbSetting") or {}
    if locality.get("enabled") is not False and (locality or policy.get("outlierDetection")):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    _connection_pool(cluster, policy.get("connectionPool") or {})
    _outlier(cluster, policy.get("outlierDetection"))
    _tls(cluster, policy.get("tls") or {}, sni, upstream or UpstreamTls())


def _connection_pool(cluster: cluster_pb2.Cluster, pool: dict[str, Any]) -> None:
    tcp = pool.get("tcp") or {}
    http = pool.get("http") or {}
    if not tcp and not http:
        return
    th = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    if "maxConnections" in tcp:
        th.max_connections.value = int(tcp["maxConnections"])
    if "http1MaxPendingRequests" in http:
        th.max_pending_requests.value = int(http["http1MaxPendingRequests"])
    if "http2MaxRequests" in http:
        th.max_requests.value = int(http["http2MaxRequests"])
    if "maxRetries" in http:
        th.max_retries.value = int(http["maxRetries"])
    cluster.circuit_breakers.thresholds.append(th)
    if "connectTimeout" in tcp:
        d = duration(tcp["connectTimeout"])
        if d is not None:
            cluster.connect_timeout.CopyFrom(d)
    if "maxRequestsPerConnection" in http:
        opts = protocol_pb2.HttpProtocolOptions()
        opts.max_requests_per_connection.value = int(http["maxRequestsPerConnection"])
        cluster.common_http_protocol_options.CopyFrom(opts)
    if "idleTimeout" in http:
        d = duration(http["idleTimeout"])
        if d is not None:
            cluster.common_http_protocol_options.idle_timeout.CopyFrom(d)


def _outlier(cluster: cluster_pb2.Cluster, od: dict[str, Any] | None) -> None:
    if not od:
        return
    out = outlier_detection_pb2.OutlierDetection()
    errors = od.get("consecutive5xxErrors", od.get("consecutiveErrors"))
    if errors is not None:
        out.consecutive_5xx.value = int(errors)
        out.enforcing_consecutive_5xx.value = 100 if int(errors) > 0 else 0
    gw = od.get("consecutiveGatewayErrors")
    if gw is not None:
        out.consecutive_gateway_failure.value = int(gw)
        out.enforcing_consecutive_gateway_failure.value = 100 if int(gw) > 0 else 0
    for key, field in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        d = duration(od.get(key))
        if d is not None:
            getattr(out, field).CopyFrom(d)
    if "maxEjectionPercent" in od:
        out.max_ejection_percent.value = int(od["maxEjectionPercent"])
    out.enforcing_success_rate.value = 0  # Istio disables success-rate ejection
    if "minHealthPercent" in od:
        cluster.common_lb_config.healthy_panic_threshold.value = float(od["minHealthPercent"])
    else:
        cluster.common_lb_config.healthy_panic_threshold.value = 0.0
    cluster.outlier_detection.CopyFrom(out)


def _auto_sni(cluster: cluster_pb2.Cluster, verify: bool) -> None:
    """Envoy's ``auto_sni`` (and ``auto_san_validation``), as Istio sets them for HTTP clusters."""
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    if key in cluster.typed_extension_protocol_options:
        cluster.typed_extension_protocol_options[key].Unpack(opts)
    else:
        opts.explicit_http_config.http_protocol_options.SetInParent()
    opts.upstream_http_protocol_options.auto_sni = True
    opts.upstream_http_protocol_options.auto_san_validation = verify
    cluster.typed_extension_protocol_options[key].CopyFrom(pack(opts))


def _tls(cluster: cluster_pb2.Cluster, tls: dict[str, Any], sni: str, upstream: UpstreamTls) -> None:
    mode = str(tls.get("mode", "DISABLE")).upper()
    if mode == "DISABLE":
        return
    if mode == "ISTIO_MUTUAL":
        sans = [str(s) for s in tls.get("subjectAltNames") or []]
        ctx = istio_mutual(str(tls.get("sni") or sni), sans)
    else:
        ctx = upstream_tls(tls, upstream.sni, upstream.credential_allowed, upstream.where)
        if upstream.http2:
            ctx.common_tls_context.alpn_protocols.append("h2")
        if upstream.http and not tls.get("sni"):
            _auto_sni(cluster, verify=not tls.get("insecureSkipVerify") and not tls.get("subjectAltNames"))
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.CopyFrom(pack(ctx))
