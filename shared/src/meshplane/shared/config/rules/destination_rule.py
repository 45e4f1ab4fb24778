"""Istio's DestinationRule rules: host, subsets, traffic policy (pools, outliers, LB, TLS)."""

from __future__ import annotations

from meshplane.shared.config.checks.durations import check_duration
from meshplane.shared.config.checks.export_to import export_to_problems
from meshplane.shared.config.checks.hosts import check_fqdn, check_wildcard_domain, is_ip, is_istio_label
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.base import IstioModel
from meshplane.shared.config.models.destination_rule import (
    ClientTLSMode,
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRule,
    H2UpgradePolicy,
    LoadBalancerSettings,
    OutlierDetection,
    SimpleLB,
    TrafficPolicy,
)
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.load_balancer import check_load_balancer
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.selectors import check_selector


def check(dr: DestinationRule, ctx: ObjectContext, issues: Issues) -> None:
    if problem := check_wildcard_domain(dr.host or ""):
        issues.error("spec.host", problem)
    if dr.traffic_policy is not None:
        check_traffic_policy(dr.traffic_policy, "spec.trafficPolicy", issues)
    names: set[str] = set()
    for i, subset in enumerate(dr.subsets or []):
        path = f"spec.subsets[{i}]"
        if not is_istio_label(subset.name):
            issues.error(f"{path}.name", f"subset name {subset.name!r} must be a DNS-1123 label")
        if subset.name in names:
            issues.error(f"{path}.name", f"duplicate subset name {subset.name!r}")
        names.add(subset.name)
        for key, problem in label_problems(subset.labels or {}):
            issues.error(f"{path}.labels.{key}", problem)
        if subset.traffic_policy is not None:
            check_traffic_policy(subset.traffic_policy, f"{path}.trafficPolicy", issues)
    export_to = dr.export_to or []
    for i, problem in export_to_problems(export_to, ctx.namespace, allow_none=False):
        issues.error(f"spec.exportTo[{i}]", problem)
    if dr.workload_selector is not None:
        check_selector(dr.workload_selector, "spec.workloadSelector", issues)
        canonical = {ctx.namespace if e == "." else e for e in export_to}
        if canonical and canonical != {ctx.namespace}:
            issues.error(
                "spec.exportTo",
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            )


def _empty(model: IstioModel) -> bool:
    return not model.model_dump(exclude_none=True)


def check_traffic_policy(policy: TrafficPolicy, path: str, issues: Issues) -> None:
    if _empty(policy):
        issues.error(path, "traffic policy must have at least one field")
    _check_policy_parts(policy, path, issues)
    for name, value in (
        ("tunnel", policy.tunnel),
        ("proxyProtocol", policy.proxy_protocol),
        ("retryBudget", policy.retry_budget),
    ):
        if value is not None:
            issues.warn(f"{path}.{name}", f"{NOT_APPLIED}: {name}")
    if policy.tunnel is not None and policy.proxy_protocol is not None:
        issues.error(path, "tunnel and proxyProtocol cannot both be set")
    if policy.tunnel is not None:
        tunnel = policy.tunnel
        if tunnel.protocol and tunnel.protocol not in ("CONNECT", "POST"):
            issues.error(f"{path}.tunnel.protocol", 'tunnel protocol must be "CONNECT" or "POST"')
        target = tunnel.target_host or ""
        if not is_ip(target) and (problem := check_fqdn(target)):
            issues.error(
                f"{path}.tunnel.targetHost", f"tunnel target host must be a valid FQDN or IP: {problem}"
            )
        if tunnel.target_port is None or check_port(tunnel.target_port):
            issues.error(f"{path}.tunnel.targetPort", "tunnel targetPort must be in the range 1..65535")
    for i, pls in enumerate(policy.port_level_settings or []):
        ppath = f"{path}.portLevelSettings[{i}]"
        if pls.port is None or pls.port.number is None:
            issues.error(f"{ppath}.port", "port level setting must have a port")
        elif problem := check_port(pls.port.number):
            issues.error(f"{ppath}.port.number", problem)
        if all(
            getattr(pls, f) is None for f in ("load_balancer", "connection_pool", "outlier_detection", "tls")
        ):
            issues.error(
                ppath,
                "port level setting must set at least one of loadBalancer, connectionPool, "
                "outlierDetection or tls",
            )
        _check_policy_parts(pls, ppath, issues)


def _check_policy_parts(policy: TrafficPolicy | object, path: str, issues: Issues) -> None:
    lb = getattr(policy, "load_balancer", None)
    pool = getattr(policy, "connection_pool", None)
    outlier = getattr(policy, "outlier_detection", None)
    tls = getattr(policy, "tls", None)
    if isinstance(lb, LoadBalancerSettings):
        check_load_balancer(
            lb, outlier if isinstance(outlier, OutlierDetection) else None, f"{path}.loadBalancer", issues
        )
    if isinstance(pool, ConnectionPoolSettings):
        check_connection_pool(pool, f"{path}.connectionPool", issues)
        _warn_pool_not_applied(pool, f"{path}.connectionPool", issues)
    if isinstance(outlier, OutlierDetection):
        _check_outlier(outlier, f"{path}.outlierDetection", issues)
    if isinstance(tls, ClientTLSSettings):
        _check_tls(tls, f"{path}.tls", issues)
        if tls.ca_crl:
            issues.warn(f"{path}.tls.caCrl", f"{NOT_APPLIED}: tls.caCrl")
    if isinstance(lb, LoadBalancerSettings):
        _warn_warmup_not_applied(lb, f"{path}.loadBalancer", issues)


def _warn_warmup_not_applied(lb: LoadBalancerSettings, path: str, issues: Issues) -> None:
    """Slow start exists for round robin and least request only (Istio ignores it elsewhere)."""
    slow_start = lb.consistent_hash is None and lb.simple not in (SimpleLB.RANDOM, SimpleLB.PASSTHROUGH)
    for name, value in (("warmup", lb.warmup), ("warmupDurationSecs", lb.warmup_duration_secs)):
        if value is not None and not slow_start:
            issues.warn(
                f"{path}.{name}",
                f"{NOT_APPLIED}: loadBalancer.{name} (slow start is for ROUND_ROBIN and LEAST_REQUEST only)",
            )


def _warn_pool_not_applied(pool: ConnectionPoolSettings, path: str, issues: Issues) -> None:
    """The connection pool settings Pilot does not put on clusters yet."""
    fields = [
        ("tcp.idleTimeout", pool.tcp is not None and pool.tcp.idle_timeout is not None),
        ("http.maxConcurrentStreams", pool.http is not None and pool.http.max_concurrent_streams is not None),
        ("http.h2UpgradePolicy", pool.http is not None and pool.http.h2_upgrade_policy is not None),
        ("http.useClientProtocol", pool.http is not None and bool(pool.http.use_client_protocol)),
    ]
    for name, used in fields:
        if used:
            issues.warn(f"{path}.{name}", f"{NOT_APPLIED}: {name}")


def check_connection_pool(pool: ConnectionPoolSettings, path: str, issues: Issues) -> None:
    if pool.http is None and pool.tcp is None:
        issues.error(path, "connection pool must set at least one of http or tcp")
    counts: list[tuple[str, int | None]] = []
    durations = []
    if pool.http is not None:
        h = pool.http
        counts += [
            ("http.http1MaxPendingRequests", h.http1_max_pending_requests),
            ("http.http2MaxRequests", h.http2_max_requests),
            ("http.maxRequestsPerConnection", h.max_requests_per_connection),
            ("http.maxRetries", h.max_retries),
            ("http.maxConcurrentStreams", h.max_concurrent_streams),
        ]
        durations.append(("http.idleTimeout", h.idle_timeout))
        if h.use_client_protocol and h.h2_upgrade_policy == H2UpgradePolicy.UPGRADE:
            issues.error(f"{path}.http", "useClientProtocol cannot be combined with h2UpgradePolicy UPGRADE")
    if pool.tcp is not None:
        t = pool.tcp
        counts.append(("tcp.maxConnections", t.max_connections))
        durations += [
            ("tcp.connectTimeout", t.connect_timeout),
            ("tcp.maxConnectionDuration", t.max_connection_duration),
            ("tcp.idleTimeout", t.idle_timeout),
        ]
        if t.tcp_keepalive is not None:
            durations += [
                ("tcp.tcpKeepalive.time", t.tcp_keepalive.time),
                ("tcp.tcpKeepalive.interval", t.tcp_keepalive.interval),
            ]
    for name, value in counts:
        if value is not None and value < 0:
            issues.error(f"{path}.{name}", f"{name.rsplit('.', 1)[-1]} must not be negative")
    for name, duration in durations:
        if duration is not None and (problem := check_duration(duration)):
            issues.error(f"{path}.{name}", problem)


def _check_outlier(od: OutlierDetection, path: str, issues: Issues) -> None:
    for name, value in (
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ):
        if value is not None and not 0 <= value <= 100:
            issues.error(f"{path}.{name}", f"{name} must be in the range 0..100")
    for name, count in (
        ("consecutiveErrors", od.consecutive_errors),
        ("consecutive5xxErrors", od.consecutive_5xx_errors),
        ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
        ("consecutiveLocalOriginFailures", od.consecutive_local_origin_failures),
    ):
        if count is not None and count < 0:
            issues.error(f"{path}.{name}", f"{name} must not be negative")
    for name, duration in (("interval", od.interval), ("baseEjectionTime", od.base_ejection_time)):
        if duration is not None and (problem := check_duration(duration)):
            issues.error(f"{path}.{name}", problem)
    if od.consecutive_local_origin_failures and not od.split_external_local_origin_errors:
        issues.error(
            f"{path}.consecutiveLocalOriginFailures",
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors to be true",
        )
    if od.consecutive_errors is not None:
        issues.warn(f"{path}.consecutiveErrors", "consecutiveErrors is deprecated; use consecutive5xxErrors")


def _check_tls(tls: ClientTLSSettings, path: str, issues: Issues) -> None:
    if tls.insecure_skip_verify:
        if tls.mode == ClientTLSMode.SIMPLE and (
            tls.ca_certificates or tls.credential_name or tls.subject_alt_names
        ):
            issues.error(
                path,
                "cannot specify caCertificates, credentialName or subjectAltNames when "
                "insecureSkipVerify is true",
            )
        if tls.mode == ClientTLSMode.MUTUAL and (tls.ca_certificates or tls.subject_alt_names):
            issues.error(
                path, "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is true"
            )
    if tls.mode in (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL) and tls.credential_name:
        for field, alias in (
            ("client_certificate", "clientCertificate"),
            ("private_key", "privateKey"),
            ("ca_certificates", "caCertificates"),
            ("ca_crl", "caCrl"),
        ):
            if getattr(tls, field):
                issues.error(f"{path}.{alias}", f"cannot specify {alias} if credentialName is set")
        return
    if tls.mode == ClientTLSMode.MUTUAL:
        if not tls.client_certificate:
            issues.error(f"{path}.clientCertificate", "client certificate required for mutual tls")
        if not tls.private_key:
            issues.error(f"{path}.privateKey", "private key required for mutual tls")
