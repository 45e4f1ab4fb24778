"""Istio's Gateway rules: servers, hosts, ports and server TLS settings (shared with Sidecar)."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import (
    check_unix_address,
    check_wildcard_domain,
    is_dns1123_label,
    is_ip,
)
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import TLS_PROTOCOLS, check_port, check_protocol
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.gateway import Gateway, Server, ServerTLSMode, ServerTLSSettings
from meshplane.shared.config.rules.context import ObjectContext

_WEAK_TLS = ("TLSV1_0", "TLSV1_1")


def check(gw: Gateway, ctx: ObjectContext, issues: Issues) -> None:
    if not gw.servers:
        issues.error("spec.servers", "gateway must have at least one server")
    port_names: dict[str, int] = {}
    for i, server in enumerate(gw.servers or []):
        path = f"spec.servers[{i}]"
        _check_server(server, path, issues)
        name = server.port.name if server.port else None
        if name:
            if name in port_names:
                issues.error(
                    f"{path}.port.name", f"port name {name!r} already used by servers[{port_names[name]}]"
                )
            else:
                port_names[name] = i
    for key, problem in label_problems(gw.selector or {}):
        issues.error(f"spec.selector.{key}", problem)


def check_gateway_host(host: str, path: str, issues: Issues) -> None:
    namespace, sep, dns_name = host.rpartition("/")
    if sep and namespace not in ("*", ".") and not is_dns1123_label(namespace):
        issues.error(path, f"invalid namespace {namespace!r} in host {host!r}")
    if dns_name == "*" or is_ip(dns_name):
        return
    if "." not in dns_name:
        issues.error(path, f"short names like {dns_name!r} are not allowed; use a fully qualified name")
        return
    first = dns_name.split(".", 1)[0]
    if first.startswith("*") and first != "*":
        issues.error(path, f"partial wildcard {dns_name!r} is not allowed")
        return
    if problem := check_wildcard_domain(dns_name):
        issues.error(path, problem)


def _check_server(server: Server, path: str, issues: Issues) -> None:
    if not server.hosts:
        issues.error(f"{path}.hosts", "server must have at least one host")
    for j, host in enumerate(server.hosts or []):
        check_gateway_host(host, f"{path}.hosts[{j}]", issues)
    unix_bind = bool(server.bind and server.bind.startswith("unix://"))
    if server.bind:
        if unix_bind:
            if problem := check_unix_address(server.bind):
                issues.error(f"{path}.bind", problem)
        elif not is_ip(server.bind):
            issues.error(f"{path}.bind", f"bind {server.bind!r} must be an IP address or unix:// path")
    protocol = ""
    if server.port is None:
        issues.error(f"{path}.port", "server must have a port")
    else:
        port = server.port
        if port.number is None or port.number == 0:
            if not unix_bind:
                issues.error(f"{path}.port.number", "port number is required (0 only with a unix:// bind)")
        elif problem := check_port(port.number):
            issues.error(f"{path}.port.number", problem)
        if not port.name:
            issues.error(f"{path}.port.name", "port name is required")
        if not port.protocol:
            issues.error(f"{path}.port.protocol", "port protocol is required")
        elif problem := check_protocol(port.protocol):
            issues.error(f"{path}.port.protocol", problem)
        if port.target_port is not None:
            issues.error(f"{path}.port.targetPort", "targetPort has no effect on Gateway and is not allowed")
        protocol = (port.protocol or "").upper()
    tls = server.tls
    if protocol in TLS_PROTOCOLS and tls is None:
        issues.error(f"{path}.tls", f"server config must contain tls settings for {protocol} ports")
    elif tls is not None and protocol and protocol not in TLS_PROTOCOLS:
        if protocol != "HTTP":
            issues.error(
                f"{path}.tls", f"server cannot have tls settings for non-TLS port protocol {protocol}"
            )
        elif tls.model_dump(exclude_none=True, exclude={"https_redirect"}):
            issues.error(f"{path}.tls", "tls on a plain HTTP port may only set httpsRedirect")
    if tls is not None and protocol in TLS_PROTOCOLS:
        check_server_tls(tls, f"{path}.tls", issues)


def check_server_tls(tls: ServerTLSSettings, path: str, issues: Issues) -> None:
    mode = tls.mode or ServerTLSMode.PASSTHROUGH
    file_based = bool(tls.server_certificate or tls.private_key)
    sources = [bool(tls.credential_name), bool(tls.credential_names), bool(tls.tls_certificates), file_based]
    if sum(sources) > 1:
        issues.error(
            path, "only one of credentialName, credentialNames, tlsCertificates or certificate files"
        )
    if mode == ServerTLSMode.ISTIO_MUTUAL:
        for field, alias in (
            ("server_certificate", "serverCertificate"),
            ("private_key", "privateKey"),
            ("ca_certificates", "caCertificates"),
            ("credential_name", "credentialName"),
            ("credential_names", "credentialNames"),
            ("tls_certificates", "tlsCertificates"),
        ):
            if getattr(tls, field):
                issues.error(f"{path}.{alias}", f"ISTIO_MUTUAL TLS cannot have associated {alias}")
    elif mode in (ServerTLSMode.SIMPLE, ServerTLSMode.MUTUAL, ServerTLSMode.OPTIONAL_MUTUAL):
        if not (tls.credential_name or tls.credential_names or tls.tls_certificates):
            if not tls.server_certificate:
                issues.error(f"{path}.serverCertificate", f"{mode} TLS requires a server certificate")
            if not tls.private_key:
                issues.error(f"{path}.privateKey", f"{mode} TLS requires a private key")
            if mode != ServerTLSMode.SIMPLE and not tls.ca_certificates:
                issues.error(f"{path}.caCertificates", f"{mode} TLS requires a CA certificate bundle")
        if mode == ServerTLSMode.SIMPLE and tls.ca_crl:
            issues.error(f"{path}.caCrl", "a CRL cannot be used with SIMPLE TLS")
    seen: set[str] = set()
    for i, suite in enumerate(tls.cipher_suites or []):
        if suite in seen:
            issues.warn(f"{path}.cipherSuites[{i}]", f"duplicate cipher suite {suite!r}")
        seen.add(suite)
        if (
            not suite.replace("-", "")
            .replace("_", "")
            .replace("[", "")
            .replace("]", "")
            .replace("|", "")
            .isalnum()
        ):
            issues.warn(f"{path}.cipherSuites[{i}]", f"invalid cipher suite {suite!r}")
    if tls.min_protocol_version in _WEAK_TLS and not tls.cipher_suites:
        issues.warn(
            f"{path}.minProtocolVersion", "TLS 1.0/1.1 is used without cipherSuites; set them explicitly"
        )
