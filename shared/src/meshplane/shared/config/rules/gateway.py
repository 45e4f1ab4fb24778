"""Istio's Gateway rules: servers, hosts, ports and server TLS settings (shared with Sidecar)."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import (
    check_unix_address,
    check_wildcard_domain,
    is_ip,
    is_istio_label,
    partial_wildcard_problem,
)
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import HTTP_PROTOCOLS, TLS_PROTOCOLS, check_port, check_protocol
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.gateway import Gateway, Server, ServerTLSMode, ServerTLSSettings
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.notapplied import NOT_APPLIED

#: BoringSSL cipher names Envoy accepts in ``cipherSuites`` (PSK suites excluded).
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    }
)
_WEAK_TLS = ("TLSV1_0", "TLSV1_1")
_CERT_FIELDS = (
    ("server_certificate", "serverCertificate"),
    ("private_key", "privateKey"),
    ("ca_certificates", "caCertificates"),
)


def check(gw: Gateway, ctx: ObjectContext, issues: Issues) -> None:
    if not gw.servers:
        issues.error("spec.servers", "gateway must have at least one server")
    port_names: dict[str, int] = {}
    for i, server in enumerate(gw.servers or []):
        path = f"spec.servers[{i}]"
        _check_server(server, path, issues)
        if server.port is None:
            continue
        name = server.port.name or ""
        if name in port_names:
            issues.error(
                f"{path}.port.name",
                f"port names in servers must be unique: duplicate name {name!r} "
                f"(servers[{port_names[name]}])",
            )
        port_names.setdefault(name, i)
        protocol = (server.port.protocol or "").upper()
        if protocol not in HTTP_PROTOCOLS and server.tls is not None and server.tls.https_redirect:
            issues.warn(
                f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers"
            )
    for key, problem in label_problems(gw.selector or {}):
        issues.error(f"spec.selector.{key}", problem)


def check_gateway_host(host: str, path: str, issues: Issues) -> None:
    """``ns/dnsName`` or the old bare ``dnsName``; namespace ``*``, ``.`` or a label; IPs allowed."""
    namespace, sep, dns_name = host.rpartition("/")
    if sep:
        if not namespace or not dns_name:
            issues.error(path, "config namespace and dnsName in host entry cannot be empty")
            return
        if namespace not in ("*", ".") and not is_istio_label(namespace):
            issues.error(path, f"invalid namespace value {namespace!r} in gateway")
    if dns_name == "*" or is_ip(dns_name):
        return
    if "." not in dns_name:
        issues.error(path, f"short names (non FQDN) like {dns_name!r} are not allowed")
    elif problem := check_wildcard_domain(dns_name):
        issues.error(path, problem)
    if problem := partial_wildcard_problem(dns_name):
        issues.error(path, problem)


def _check_server(server: Server, path: str, issues: Issues) -> None:
    if not server.hosts:
        issues.error(f"{path}.hosts", "server config must contain at least one host")
    for j, host in enumerate(server.hosts or []):
        check_gateway_host(host, f"{path}.hosts[{j}]", issues)
    bind = server.bind or ""
    unix_bind = bind.startswith("unix://")
    if unix_bind:
        if problem := check_unix_address(bind):
            issues.error(f"{path}.bind", problem)
        if server.port is not None and server.port.number:
            issues.error(f"{path}.port.number", "port number must be 0 for a unix domain socket bind")
    elif bind and not is_ip(bind):
        issues.error(f"{path}.bind", f"{bind} is not a valid IP")
    if server.port is None:
        issues.error(f"{path}.port", "port is required")
        return
    port = server.port
    port_ok = True
    if not port.protocol or check_protocol(port.protocol):
        issues.error(
            f"{path}.port.protocol",
            f"invalid protocol {port.protocol or ''!r}, supported protocols are "
            "HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, TLS, HTTPS",
        )
        port_ok = False
    if ((port.number or 0) > 0 or not unix_bind) and (problem := check_port(port.number or 0)):
        issues.error(f"{path}.port.number", problem)
        port_ok = False
    if port.target_port:
        issues.error(f"{path}.port.targetPort", "targetPort has no impact on Gateways")
    if not port.name:
        issues.error(f"{path}.port.name", "port name must be set")
        port_ok = False
    if server.tls is not None:
        check_server_tls(server.tls, f"{path}.tls", issues)
        _warn_tls_not_applied(server.tls, f"{path}.tls", issues)
    if not port_ok:
        return
    protocol = (port.protocol or "").upper()
    tls = server.tls
    if protocol in TLS_PROTOCOLS and tls is None:
        issues.error(f"{path}.tls", "server must have TLS settings for HTTPS/TLS protocols")
    elif protocol not in TLS_PROTOCOLS and tls is not None:
        if protocol in HTTP_PROTOCOLS:
            passthrough = tls.mode in (None, ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH)
            if not passthrough or any(getattr(tls, f) for f, _ in _CERT_FIELDS):
                issues.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
        else:
            issues.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")


def check_server_tls(tls: ServerTLSSettings, path: str, issues: Issues) -> None:
    if tls.min_protocol_version in _WEAK_TLS and not tls.cipher_suites:
        issues.warn(
            f"{path}.minProtocolVersion",
            "TLS versions below TLSV1_2 require setting compatible "
            "cipherSuites, as the defaults no longer include them",
        )
    seen: set[str] = set()
    for i, suite in enumerate(tls.cipher_suites or []):
        valid = suite in ("", "ALL") or not suite[:1].isalnum() or suite in CIPHER_SUITES
        if not valid:
            issues.warn(f"{path}.cipherSuites[{i}]", f"ignoring invalid cipher suite {suite!r}")
        elif suite in seen:
            issues.warn(f"{path}.cipherSuites[{i}]", f"ignoring duplicate cipher suite {suite!r}")
        seen.add(suite)
    sources = [
        bool(tls.credential_name),
        bool(tls.credential_names),
        bool(tls.tls_certificates),
        bool(tls.server_certificate or tls.private_key),
    ]
    if sum(sources) > 1:
        issues.error(
            path,
            "only one of credentialName, credentialNames, tlsCertificates or "
            "serverCertificate/privateKey may be set",
        )
    mode = tls.mode or ServerTLSMode.PASSTHROUGH
    if mode == ServerTLSMode.ISTIO_MUTUAL:
        for field, alias in (
            *_CERT_FIELDS,
            ("credential_name", "credentialName"),
            ("credential_names", "credentialNames"),
            ("tls_certificates", "tlsCertificates"),
        ):
            if getattr(tls, field):
                issues.error(f"{path}.{alias}", f"ISTIO_MUTUAL TLS cannot have associated {alias}")
        return
    if mode in (ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH):
        if tls.ca_crl or tls.credential_name or any(getattr(tls, f) for f, _ in _CERT_FIELDS):
            issues.warn(path, f"{mode} mode does not use certificates, they will be ignored")
        return
    if tls.ca_crl and tls.credential_name:
        issues.error(
            f"{path}.caCrl", "CRL is not supported with credentialName; put the CRL in the credential"
        )
    if tls.ca_crl and mode == ServerTLSMode.SIMPLE:
        issues.error(f"{path}.caCrl", "CRL is not supported with SIMPLE TLS")
    if tls.credential_name or tls.credential_names or tls.tls_certificates:
        return
    if not tls.server_certificate:
        issues.error(f"{path}.serverCertificate", f"{mode} TLS requires a server certificate")
    if not tls.private_key:
        issues.error(f"{path}.privateKey", f"{mode} TLS requires a private key")
    if mode != ServerTLSMode.SIMPLE and not tls.ca_certificates:
        issues.error(f"{path}.caCertificates", f"{mode} TLS requires a client CA bundle")


#: Gateway server TLS fields Pilot does not put on the listener's TLS context.
_TLS_NOT_APPLIED = (
    ("credential_names", "credentialNames"),
    ("tls_certificates", "tlsCertificates"),
    ("ca_crl", "caCrl"),
    ("ca_cert_credential_name", "caCertCredentialName"),
    ("verify_certificate_spki", "verifyCertificateSpki"),
    ("verify_certificate_hash", "verifyCertificateHash"),
)


def _warn_tls_not_applied(tls: ServerTLSSettings, path: str, issues: Issues) -> None:
    for field, alias in _TLS_NOT_APPLIED:
        if getattr(tls, field):
            issues.warn(f"{path}.{alias}", f"{NOT_APPLIED}: tls.{alias}")
