"""Istio's Sidecar rules: ingress and egress listeners, egress hosts, outbound traffic policy."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import (
    check_unix_address,
    check_wildcard_domain,
    is_dns1123_label,
    is_ip,
)
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import TLS_PROTOCOLS, check_port, check_port_name, check_protocol
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.gateway import ServerTLSMode
from meshplane.shared.config.models.sidecar import CaptureMode, OutboundMode, Sidecar, SidecarPort
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.destination_rule import check_connection_pool
from meshplane.shared.config.rules.gateway import check_server_tls
from meshplane.shared.config.rules.routing import check_destination

_ENDPOINT_HOSTS = ("127.0.0.1", "0.0.0.0", "[::1]", "[::]")


def check(sc: Sidecar, ctx: ObjectContext, issues: Issues) -> None:
    if sc.workload_selector is not None:
        labels = sc.workload_selector.labels or {}
        if not labels:
            issues.error("spec.workloadSelector.labels", "sidecar workloadSelector cannot have empty labels")
        for key, problem in label_problems(labels):
            issues.error(f"spec.workloadSelector.labels.{key}", problem)
    if (
        not sc.egress
        and not sc.ingress
        and sc.outbound_traffic_policy is None
        and sc.inbound_connection_pool is None
    ):
        issues.error("spec", "sidecar: empty configuration provided")
    _check_ingress(sc, issues)
    _check_egress(sc, issues)
    if sc.inbound_connection_pool is not None:
        check_connection_pool(sc.inbound_connection_pool, "spec.inboundConnectionPool", issues)
    otp = sc.outbound_traffic_policy
    if otp is not None:
        if otp.mode == OutboundMode.ALLOW_ANY_DYNAMIC_DNS:
            issues.error(
                "spec.outboundTrafficPolicy.mode", "ALLOW_ANY_DYNAMIC_DNS is only valid in MeshConfig"
            )
        if otp.egress_proxy is not None:
            if otp.mode != OutboundMode.ALLOW_ANY:
                issues.error("spec.outboundTrafficPolicy.egressProxy", "egressProxy requires mode ALLOW_ANY")
            check_destination(otp.egress_proxy, "spec.outboundTrafficPolicy.egressProxy", issues)
            if otp.egress_proxy.port is None or otp.egress_proxy.port.number is None:
                issues.error("spec.outboundTrafficPolicy.egressProxy.port", "egressProxy must have a port")


def _check_port(port: SidecarPort, path: str, issues: Issues) -> None:
    if port.number is not None and port.number != 0 and (problem := check_port(port.number)):
        issues.error(f"{path}.number", problem)
    if port.protocol and (problem := check_protocol(port.protocol)):
        issues.error(f"{path}.protocol", problem)
    if port.name and (problem := check_port_name(port.name)):
        issues.error(f"{path}.name", problem)
    if port.target_port is not None:
        issues.error(f"{path}.targetPort", "targetPort is not allowed on Sidecar ports")


def _check_default_endpoint(endpoint: str, path: str, issues: Issues) -> None:
    if endpoint.startswith("unix://"):
        if problem := check_unix_address(endpoint):
            issues.error(path, problem)
        return
    host, sep, port = endpoint.rpartition(":")
    if not sep or host not in (*_ENDPOINT_HOSTS, "") or not port.isdigit() or check_port(int(port)):
        issues.error(
            path,
            f"invalid defaultEndpoint {endpoint!r}: use 127.0.0.1:<port>, 0.0.0.0:<port>, "
            "[::1]:<port>, [::]:<port> or unix://<path>",
        )


def _check_ingress(sc: Sidecar, issues: Issues) -> None:
    numbers: dict[int, int] = {}
    for i, listener in enumerate(sc.ingress or []):
        path = f"spec.ingress[{i}]"
        if listener.port is None:
            issues.error(f"{path}.port", "sidecar ingress listener must have a port")
        else:
            _check_port(listener.port, f"{path}.port", issues)
            number = listener.port.number or 0
            if number == 0 or check_port(number):
                issues.error(f"{path}.port.number", "ingress port number must be in the range 1..65535")
            elif number in numbers:
                issues.error(
                    f"{path}.port.number", f"port {number} already used by ingress[{numbers[number]}]"
                )
            numbers.setdefault(number, i)
        if listener.bind and not is_ip(listener.bind):
            issues.error(f"{path}.bind", f"bind {listener.bind!r} must be an IP address")
        if listener.default_endpoint:
            _check_default_endpoint(listener.default_endpoint, f"{path}.defaultEndpoint", issues)
        if listener.connection_pool is not None:
            check_connection_pool(listener.connection_pool, f"{path}.connectionPool", issues)
        tls = listener.tls
        if tls is not None:
            tpath = f"{path}.tls"
            if tls.https_redirect:
                issues.error(f"{tpath}.httpsRedirect", "httpsRedirect is not supported on sidecar ingress")
            if tls.subject_alt_names:
                issues.error(
                    f"{tpath}.subjectAltNames", "subjectAltNames is not supported on sidecar ingress"
                )
            if tls.credential_name:
                issues.error(f"{tpath}.credentialName", "credentialName is not supported on sidecar ingress")
            if tls.mode in (ServerTLSMode.ISTIO_MUTUAL, ServerTLSMode.AUTO_PASSTHROUGH):
                issues.error(f"{tpath}.mode", f"TLS mode {tls.mode} is not supported on sidecar ingress")
            protocol = (listener.port.protocol or "").upper() if listener.port else ""
            if protocol not in TLS_PROTOCOLS:
                issues.error(tpath, "tls settings require an HTTPS or TLS port protocol")
            else:
                check_server_tls(tls, tpath, issues)


def _check_egress(sc: Sidecar, issues: Issues) -> None:
    egress = sc.egress or []
    ports: dict[str, int] = {}
    for i, listener in enumerate(egress):
        path = f"spec.egress[{i}]"
        if listener.port is None:
            if i != len(egress) - 1:
                issues.error(path, "an egress listener without a port must be the last listener")
        else:
            _check_port(listener.port, f"{path}.port", issues)
            number = listener.port.number or 0
            bind = listener.bind or ""
            if number == 0:
                if not bind.startswith("unix://"):
                    issues.error(f"{path}.port.number", "port 0 requires a unix:// bind")
                if listener.capture_mode not in (None, CaptureMode.DEFAULT, CaptureMode.NONE):
                    issues.error(f"{path}.captureMode", "unix:// binds require captureMode DEFAULT or NONE")
                key = bind
            else:
                key = f"{bind}:{number}"
            if key in ports:
                issues.error(f"{path}.port", f"egress listener {key!r} already used by egress[{ports[key]}]")
            ports.setdefault(key, i)
        if listener.bind and not listener.bind.startswith("unix://") and not is_ip(listener.bind):
            issues.error(f"{path}.bind", f"bind {listener.bind!r} must be an IP address or unix:// path")
        if not listener.hosts:
            issues.error(f"{path}.hosts", "egress listener must have at least one host")
        seen: set[str] = set()
        for j, host in enumerate(listener.hosts or []):
            hpath = f"{path}.hosts[{j}]"
            _check_egress_host(host, hpath, issues)
            if host in seen:
                issues.warn(hpath, f"duplicate egress host {host!r}")
            seen.add(host)
        if "*/*" in seen and len(seen) > 1:
            issues.warn(f"{path}.hosts", "'*/*' already includes every other host listed")
        if listener.port is None and listener.bind:
            issues.error(f"{path}.bind", "a bind requires a port")


def _check_egress_host(host: str, path: str, issues: Issues) -> None:
    namespace, sep, dns_name = host.partition("/")
    if not sep:
        issues.error(path, f"egress host {host!r} must be of the form namespace/dnsName")
        return
    ns = namespace.removeprefix("~")
    if namespace not in ("*", ".", "~") and not is_dns1123_label(ns):
        issues.error(path, f"invalid namespace {namespace!r} in egress host {host!r}")
    if dns_name == "*":
        return
    if "." not in dns_name:
        issues.error(path, f"short names like {dns_name!r} are not allowed in egress hosts")
    elif problem := check_wildcard_domain(dns_name):
        issues.error(path, problem)
