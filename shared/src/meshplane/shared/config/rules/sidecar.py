"""Istio's Sidecar rules: ingress and egress listeners, egress hosts, outbound traffic policy."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import (
    check_fqdn,
    check_unix_address,
    check_wildcard_domain,
    is_ip,
    is_istio_label,
    partial_wildcard_problem,
)
from meshplane.shared.config.checks.ports import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    check_port,
    check_port_name,
    check_protocol,
)
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.gateway import ServerTLSMode
from meshplane.shared.config.models.sidecar import (
    CaptureMode,
    IstioIngressListener,
    OutboundMode,
    OutboundTrafficPolicy,
    Sidecar,
    SidecarPort,
)
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.destination_rule import check_connection_pool
from meshplane.shared.config.rules.gateway import check_server_tls
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.routing import check_destination
from meshplane.shared.config.rules.selectors import check_selector_labels

_ENDPOINT_HOSTS = ("127.0.0.1", "0.0.0.0", "[::1]", "[::]", "")


def check(sc: Sidecar, ctx: ObjectContext, issues: Issues) -> None:
    if sc.workload_selector is not None:
        check_selector_labels(sc.workload_selector.labels, "spec.workloadSelector.labels", issues)
    if (
        not sc.egress
        and not sc.ingress
        and sc.outbound_traffic_policy is None
        and sc.inbound_connection_pool is None
    ):
        issues.error("spec", "sidecar: empty configuration provided")
        return
    ports: dict[int, int] = {}
    for i, listener in enumerate(sc.ingress or []):
        _check_ingress(listener, f"spec.ingress[{i}]", i, ports, issues)
    if sc.inbound_connection_pool is not None:
        check_connection_pool(sc.inbound_connection_pool, "spec.inboundConnectionPool", issues)
    _check_egress(sc, ctx.namespace, issues)
    if sc.outbound_traffic_policy is not None:
        _check_outbound(sc.outbound_traffic_policy, "spec.outboundTrafficPolicy", issues)
    _warn_not_applied(sc, issues)


def _warn_not_applied(sc: Sidecar, issues: Issues) -> None:
    """The Sidecar fields Pilot does not turn into Envoy config (each named where it is set)."""
    used: list[tuple[str, object, str]] = [("spec.inboundConnectionPool", sc.inbound_connection_pool, "")]
    follows = " (listeners follow the proxy's interception mode)"
    for i, ing in enumerate(sc.ingress or []):
        capture = ing.capture_mode if ing.capture_mode is not CaptureMode.DEFAULT else None
        used += [
            (f"spec.ingress[{i}].captureMode", capture, follows),
            (f"spec.ingress[{i}].tls", ing.tls, ""),
            (f"spec.ingress[{i}].connectionPool", ing.connection_pool, ""),
        ]
    for i, eg in enumerate(sc.egress or []):  # NONE is applied: a bound listener
        capture = eg.capture_mode if eg.capture_mode is CaptureMode.IPTABLES else None
        used.append((f"spec.egress[{i}].captureMode", capture, follows))
    if sc.outbound_traffic_policy is not None:
        used.append(("spec.outboundTrafficPolicy.egressProxy", sc.outbound_traffic_policy.egress_proxy, ""))
    for path, value, why in used:
        if value is not None:
            issues.warn(path, f"{NOT_APPLIED}: {path.removeprefix('spec.')}{why}")


def _check_port_fields(port: SidecarPort, path: str, issues: Issues, *, number_required: bool) -> None:
    if port.name and (problem := check_port_name(port.name)):
        issues.error(f"{path}.name", problem)
    if port.protocol and (problem := check_protocol(port.protocol)):
        issues.error(f"{path}.protocol", problem)
    if number_required and (problem := check_port(port.number or 0)):
        issues.error(f"{path}.number", problem)
    if port.target_port:
        issues.error(f"{path}.targetPort", "targetPort has no impact on Sidecars")


def _check_ingress(
    listener: IstioIngressListener, path: str, index: int, ports: dict[int, int], issues: Issues
) -> None:
    if listener.port is None:
        issues.error(f"{path}.port", "sidecar: port is required for ingress listeners")
        return
    port = listener.port
    _check_port_fields(port, f"{path}.port", issues, number_required=True)
    number = port.number or 0
    if number in ports:
        issues.error(
            f"{path}.port.number",
            f"sidecar: ports on IP bound listeners must be unique (already used by ingress[{ports[number]}])",
        )
    ports.setdefault(number, index)
    if listener.bind and not is_ip(listener.bind):
        issues.error(f"{path}.bind", f"{listener.bind} is not a valid IP")
    if listener.default_endpoint:
        _check_default_endpoint(listener.default_endpoint, f"{path}.defaultEndpoint", issues)
    protocol = (port.protocol or "").upper()
    tls = listener.tls
    if tls is not None:
        tpath = f"{path}.tls"
        if tls.subject_alt_names:
            issues.error(
                f"{tpath}.subjectAltNames", "sidecar: subjectAltNames is not supported in ingress tls"
            )
        if tls.https_redirect:
            issues.error(f"{tpath}.httpsRedirect", "sidecar: httpsRedirect is not supported")
        if tls.credential_name:
            issues.error(f"{tpath}.credentialName", "sidecar: credentialName is not currently supported")
        if tls.mode in (ServerTLSMode.ISTIO_MUTUAL, ServerTLSMode.AUTO_PASSTHROUGH):
            issues.error(f"{tpath}.mode", f"cannot set mode to {tls.mode} in sidecar ingress tls")
        if protocol not in TLS_PROTOCOLS:
            issues.error(tpath, "sidecar ingress tls requires an HTTPS or TLS port protocol")
        check_server_tls(tls, tpath, issues)
    pool = listener.connection_pool
    if pool is not None:
        check_connection_pool(pool, f"{path}.connectionPool", issues)
        if pool.http is not None and protocol not in HTTP_PROTOCOLS:
            issues.warn(
                f"{path}.connectionPool.http",
                f"HTTP connection pool settings are configured for port "
                f"{number} but its protocol is not HTTP ({protocol or 'unset'}); only TCP settings apply",
            )


def _check_default_endpoint(endpoint: str, path: str, issues: Issues) -> None:
    if endpoint.startswith("unix://"):
        if problem := check_unix_address(endpoint):
            issues.error(path, problem)
        return
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        issues.error(path, f"sidecar: defaultEndpoint {endpoint!r} is missing a port")
        return
    if host not in _ENDPOINT_HOSTS:
        issues.error(
            path,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, "
            "[::1]:<port>, [::]:<port>, unix://filepath or unset",
        )
    if not port.isdigit():
        issues.error(path, f"sidecar: defaultEndpoint port ({port}) is not a number")
    elif problem := check_port(int(port)):
        issues.error(path, problem)


def _check_egress(sc: Sidecar, namespace: str, issues: Issues) -> None:
    egress = sc.egress or []
    ports: dict[int, int] = {}
    uds: dict[str, int] = {}
    for i, listener in enumerate(egress):
        path = f"spec.egress[{i}]"
        if listener.port is None:
            if i != len(egress) - 1:
                issues.error(path, "sidecar: the egress listener with empty port should be the last listener")
            if listener.bind:
                issues.error(f"{path}.bind", "sidecar: a bind address requires a port")
        else:
            _check_egress_port(listener.port, listener.bind or "", listener.capture_mode, path, issues)
            number = listener.port.number or 0
            if number == 0:
                bind = listener.bind or ""
                if bind in uds:
                    issues.error(
                        f"{path}.bind", "sidecar: unix domain socket values for listeners must be unique"
                    )
                uds.setdefault(bind, i)
            else:
                if number in ports:
                    issues.error(f"{path}.port.number", "sidecar: ports on IP bound listeners must be unique")
                ports.setdefault(number, i)
        if not listener.hosts:
            issues.error(f"{path}.hosts", "sidecar: egress listener must contain at least one host")
        _check_egress_hosts(listener.hosts or [], namespace, f"{path}.hosts", issues)


def _check_egress_port(
    port: SidecarPort, bind: str, capture: CaptureMode | None, path: str, issues: Issues
) -> None:
    _check_port_fields(port, f"{path}.port", issues, number_required=bool(port.number))
    if not port.number:
        if not bind.startswith("unix://"):
            issues.error(
                f"{path}.port.number", "sidecar: ports with 0 value must have a unix domain socket bind"
            )
        elif problem := check_unix_address(bind):
            issues.error(f"{path}.bind", problem)
        if capture not in (None, CaptureMode.DEFAULT, CaptureMode.NONE):
            issues.error(
                f"{path}.captureMode", "sidecar: captureMode must be DEFAULT/NONE for unix domain sockets"
            )
    elif bind and not is_ip(bind):
        issues.error(f"{path}.bind", f"{bind} is not a valid IP")


def _check_egress_hosts(hosts: list[str], namespace: str, path: str, issues: Issues) -> None:
    by_ns: dict[str, set[str]] = {}
    for j, host in enumerate(hosts):
        hpath = f"{path}[{j}]"
        ns, sep, dns_name = host.partition("/")
        if not sep:
            issues.error(hpath, "host must be of form namespace/dnsName")
            continue
        if not ns or not dns_name:
            issues.error(hpath, "config namespace and dnsName in host entry cannot be empty")
            continue
        if ns not in ("*", ".", "~") and not is_istio_label(ns.removeprefix("~")):
            issues.error(hpath, f"invalid namespace value {ns!r} in sidecar")
        if dns_name != "*" and "." not in dns_name:
            issues.error(hpath, f"short names (non FQDN) like {dns_name!r} are not allowed")
        elif problem := check_wildcard_domain(dns_name):
            issues.error(hpath, problem)
        if problem := partial_wildcard_problem(dns_name):
            issues.error(hpath, problem)
        key = namespace if ns == "." else ns
        names = by_ns.setdefault(key, set())
        if (dns_name in names or "*" in names) or (dns_name == "*" and names):
            issues.warn(hpath, f"duplicated egress host: {host}")
        names.add(dns_name)
    if "*" in by_ns.get("*", set()) and len(by_ns) != 1:
        issues.warn(path, "`*/*` host selects all resources, no other hosts can be added")


def _check_outbound(otp: OutboundTrafficPolicy, path: str, issues: Issues) -> None:
    if otp.mode == OutboundMode.ALLOW_ANY_DYNAMIC_DNS:
        issues.error(f"{path}.mode", "ALLOW_ANY_DYNAMIC_DNS is only valid in MeshConfig")
    proxy = otp.egress_proxy
    if proxy is None:
        return
    if otp.mode != OutboundMode.ALLOW_ANY:
        issues.error(f"{path}.egressProxy", "sidecar: egressProxy must be set only with ALLOW_ANY mode")
        return
    if problem := check_fqdn(proxy.host):
        issues.error(f"{path}.egressProxy.host", problem)
    if proxy.port is None:
        issues.error(f"{path}.egressProxy.port", "sidecar: egressProxy port must be set")
        return
    check_destination(proxy, f"{path}.egressProxy", issues)
