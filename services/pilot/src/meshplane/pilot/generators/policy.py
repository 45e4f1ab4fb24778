"""DestinationRule traffic policy → Envoy cluster settings (lb, connection pool, outlier, TLS)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshplane.pilot.generators.common import duration, pack
from meshplane.pilot.generators.security.mtls import istio_mutual
from meshplane.pilot.generators.security.upstream_tls import upstream_tls
from meshplane.pilot.model.config import given
from meshplane.shared.config import models
from meshplane.shared.config.models import (
    ClientTLSMode,
    ClientTLSSettings,
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetection,
    TrafficPolicy,
)
from meshplane.shared.config.models.destination_rule import HTTPSettings, TCPSettings


@dataclass(frozen=True)
class MergedPolicy:
    """The parts of a DestinationRule traffic policy that shape a cluster, as in force for one
    (port, subset) after port-level settings and the subset's policy are laid over it."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


_MERGED = frozenset(f.name for f in fields(MergedPolicy))
_NO_POLICY = MergedPolicy()

_SIMPLE_LB = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_CONN": cluster_pb2.Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
    "PASSTHROUGH": cluster_pb2.Cluster.CLUSTER_PROVIDED,
    "UNSPECIFIED": cluster_pb2.Cluster.ROUND_ROBIN,
}


def _settings(policy: TrafficPolicy | None, port: int) -> dict[str, Any]:
    """The fields of ``MergedPolicy`` that ``policy`` sets, its port-level settings for ``port``
    laid over them (each set field replaces the whole field, as Istio merges them)."""
    if policy is None:
        return {}
    out = {k: getattr(policy, k) for k in _MERGED & policy.model_fields_set}
    for pls in policy.port_level_settings or []:
        if (pls.port.number if pls.port and pls.port.number is not None else -1) == port:
            out.update({k: getattr(pls, k) for k in _MERGED & pls.model_fields_set})
    return out


def merged_policy(dr: models.DestinationRule | None, port: int, subset: str) -> MergedPolicy:
    """The traffic policy for (port, subset): top level, then port level, then subset overrides."""
    if dr is None:
        return _NO_POLICY
    settings = _settings(dr.traffic_policy, port)
    if subset:
        for sub in dr.subsets or []:
            if sub.name == subset:
                settings.update(_settings(sub.traffic_policy, port))
    return MergedPolicy(**settings) if settings else _NO_POLICY


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


def locality_lb(
    mesh: models.LocalityLoadBalancerSetting | None, own: models.LocalityLoadBalancerSetting | None
) -> models.LocalityLoadBalancerSetting | None:
    """Istio's GetLocalityLbSetting: None (off) when MeshConfig's ``localityLbSetting`` or the
    rule's says ``enabled: false``; else the rule's, else MeshConfig's, else Istio's default (on,
    nothing else set)."""
    if mesh is not None and mesh.enabled is False or own is not None and own.enabled is False:
        return None
    return own if own is not None else mesh if mesh is not None else models.LocalityLoadBalancerSetting()


def apply_policy(
    cluster: cluster_pb2.Cluster,
    policy: MergedPolicy,
    sni: str,
    upstream: UpstreamTls | None = None,
    mesh_locality: models.LocalityLoadBalancerSetting | None = None,
) -> None:
    """Mutate a freshly built cluster according to a merged traffic policy (``mesh_locality``:
    MeshConfig's ``localityLbSetting``, the default of a policy without one)."""
    lb = policy.load_balancer or LoadBalancerSettings()
    if lb.simple is not None:
        cluster.lb_policy = _SIMPLE_LB.get(lb.simple, cluster_pb2.Cluster.ROUND_ROBIN)
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.maglev is not None:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
            if ch.maglev.table_size:
                cluster.maglev_lb_config.table_size.value = ch.maglev.table_size
        else:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            ring = ch.ring_hash.minimum_ring_size if ch.ring_hash else None
            cluster.ring_hash_lb_config.minimum_ring_size.value = ring or ch.minimum_ring_size or 1024
    _slow_start(cluster, lb)
    locality = locality_lb(mesh_locality, lb.locality_lb_setting)
    if locality is not None and (given(locality) or given(policy.outlier_detection)):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    if policy.connection_pool is not None:
        _connection_pool(cluster, policy.connection_pool)
    if given(policy.outlier_detection):
        _outlier(cluster, policy.outlier_detection)
    _tls(cluster, policy.tls or ClientTLSSettings(), sni, upstream or UpstreamTls())


def _slow_start(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    """``warmup`` (else the older ``warmupDurationSecs``): Envoy's slow start, which only round
    robin and least request clusters have (Istio sets it on those and nowhere else)."""
    warmup = lb.warmup
    window = duration(warmup.duration if warmup is not None else lb.warmup_duration_secs)
    if window is None or lb.consistent_hash is not None:
        return
    if cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN:
        slow = cluster.round_robin_lb_config.slow_start_config
    elif cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST:
        slow = cluster.least_request_lb_config.slow_start_config
    else:
        return
    slow.slow_start_window.CopyFrom(window)
    if warmup is not None and warmup.minimum_percent is not None:
        slow.min_weight_percent.value = warmup.minimum_percent
    if warmup is not None and warmup.aggression is not None:
        slow.aggression.default_value = warmup.aggression
        slow.aggression.runtime_key = "upstream.slow_start.aggression"


def _connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPoolSettings) -> None:
    tcp, http = pool.tcp, pool.http
    if not given(tcp) and not given(http):
        return
    tcp = tcp or TCPSettings()
    http = http or HTTPSettings()
    th = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    if tcp.max_connections is not None:
        th.max_connections.value = tcp.max_connections
    if http.http1_max_pending_requests is not None:
        th.max_pending_requests.value = http.http1_max_pending_requests
    if http.http2_max_requests is not None:
        th.max_requests.value = http.http2_max_requests
    if http.max_retries is not None:
        th.max_retries.value = http.max_retries
    cluster.circuit_breakers.thresholds.append(th)
    connect = duration(tcp.connect_timeout)
    if connect is not None:
        cluster.connect_timeout.CopyFrom(connect)
    if http.max_requests_per_connection is not None:
        opts = protocol_pb2.HttpProtocolOptions()
        opts.max_requests_per_connection.value = http.max_requests_per_connection
        cluster.common_http_protocol_options.CopyFrom(opts)
    idle = duration(http.idle_timeout)
    if idle is not None:
        cluster.common_http_protocol_options.idle_timeout.CopyFrom(idle)
    lifetime = duration(tcp.max_connection_duration)
    if lifetime is not None:
        cluster.common_http_protocol_options.max_connection_duration.CopyFrom(lifetime)
    _keepalive(cluster, tcp)


def _keepalive(cluster: cluster_pb2.Cluster, tcp: TCPSettings) -> None:
    """``tcpKeepalive``: the socket's keepalive probes, idle time and interval (whole seconds)."""
    keep = tcp.tcp_keepalive
    if keep is None:
        return
    out = cluster.upstream_connection_options.tcp_keepalive
    out.SetInParent()
    if keep.probes is not None:
        out.keepalive_probes.value = keep.probes
    for value, field in ((keep.time, out.keepalive_time), (keep.interval, out.keepalive_interval)):
        seconds = duration(value)
        if seconds is not None:
            field.value = max(1, seconds.seconds)


def _outlier(cluster: cluster_pb2.Cluster, od: OutlierDetection) -> None:
    out = outlier_detection_pb2.OutlierDetection()
    errors = od.consecutive_5xx_errors if od.consecutive_5xx_errors is not None else od.consecutive_errors
    if errors is not None:
        out.consecutive_5xx.value = errors
        out.enforcing_consecutive_5xx.value = 100 if errors > 0 else 0
    gw = od.consecutive_gateway_errors
    if gw is not None:
        out.consecutive_gateway_failure.value = gw
        out.enforcing_consecutive_gateway_failure.value = 100 if gw > 0 else 0
    interval = duration(od.interval)
    if interval is not None:
        out.interval.CopyFrom(interval)
    ejection = duration(od.base_ejection_time)
    if ejection is not None:
        out.base_ejection_time.CopyFrom(ejection)
    if od.max_ejection_percent is not None:
        out.max_ejection_percent.value = od.max_ejection_percent
    out.enforcing_success_rate.value = 0  # Istio disables success-rate ejection
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        local = od.consecutive_local_origin_failures
        if local:
            out.consecutive_local_origin_failure.value = local
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0  # as success-rate ejection above
    if od.min_health_percent is not None:
        cluster.common_lb_config.healthy_panic_threshold.value = float(od.min_health_percent)
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


def _tls(cluster: cluster_pb2.Cluster, tls: ClientTLSSettings, sni: str, upstream: UpstreamTls) -> None:
    mode = tls.mode or ClientTLSMode.DISABLE
    if mode is ClientTLSMode.DISABLE:
        return
    if mode is ClientTLSMode.ISTIO_MUTUAL:
        ctx = istio_mutual(tls.sni or sni, list(tls.subject_alt_names or []))
    else:
        ctx = upstream_tls(tls, upstream.sni, upstream.credential_allowed, upstream.where)
        if upstream.http2:
            ctx.common_tls_context.alpn_protocols.append("h2")
        if upstream.http and not tls.sni:
            _auto_sni(cluster, verify=not tls.insecure_skip_verify and not tls.subject_alt_names)
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.CopyFrom(pack(ctx))
