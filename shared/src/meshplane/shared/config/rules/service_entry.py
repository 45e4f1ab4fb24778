"""Istio's ServiceEntry rules: hosts, addresses, ports, resolution modes and endpoints."""

from __future__ import annotations

from meshplane.shared.config.checks.export_to import export_to_problems
from meshplane.shared.config.checks.hosts import (
    check_fqdn,
    check_ip_or_cidr,
    check_wildcard_domain,
    is_cidr,
    is_ip,
)
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    check_port,
    check_port_name,
    check_protocol,
)
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.service_entry import Resolution, ServiceEntry
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.workload import check_workload_entry


def check(se: ServiceEntry, ctx: ObjectContext, issues: Issues) -> None:
    hosts = se.hosts or []
    if not hosts:
        issues.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(hosts):
        path = f"spec.hosts[{i}]"
        if host == "*":
            issues.error(path, "invalid host '*'")
        elif problem := check_wildcard_domain(host):
            issues.error(path, problem)
        elif host.startswith("*") and not host.startswith("*."):
            issues.warn(path, f"partial wildcard host {host!r} is not recommended")
    resolution = se.resolution or Resolution.NONE
    cidr_allowed = resolution in (Resolution.NONE, Resolution.STATIC)
    for i, address in enumerate(se.addresses or []):
        path = f"spec.addresses[{i}]"
        if problem := check_ip_or_cidr(address):
            issues.error(path, problem)
        elif is_cidr(address) and not cidr_allowed:
            issues.error(
                path, f"CIDR addresses are allowed only with NONE or STATIC resolution, not {resolution}"
            )
    names: dict[str, int] = {}
    numbers: dict[int, int] = {}
    for i, port in enumerate(se.ports or []):
        path = f"spec.ports[{i}]"
        if port.name is not None:
            if problem := check_port_name(port.name):
                issues.error(f"{path}.name", problem)
            if port.name in names:
                issues.error(
                    f"{path}.name", f"port name {port.name!r} already defined by ports[{names[port.name]}]"
                )
            names.setdefault(port.name, i)
        if problem := check_port(port.number):
            issues.error(f"{path}.number", problem)
        if port.number in numbers:
            issues.error(
                f"{path}.number",
                f"port number {port.number} already defined by ports[{numbers[port.number]}]",
            )
        numbers.setdefault(port.number, i)
        if port.protocol and (problem := check_protocol(port.protocol)):
            issues.error(f"{path}.protocol", problem)
        if port.target_port is not None and (problem := check_port(port.target_port)):
            issues.error(f"{path}.targetPort", problem)
    if se.workload_selector is not None:
        if se.endpoints:
            issues.error("spec.workloadSelector", "only one of endpoints or workloadSelector can be set")
        for key, problem in label_problems(se.workload_selector.labels or {}):
            issues.error(f"spec.workloadSelector.labels.{key}", problem)
    _check_resolution(se, resolution, issues)
    for i, problem in export_to_problems(se.export_to or [], ctx.namespace, allow_none=True):
        issues.error(f"spec.exportTo[{i}]", problem)


def _check_resolution(se: ServiceEntry, resolution: Resolution, issues: Issues) -> None:
    endpoints = se.endpoints or []
    hosts = se.hosts or []
    service_ports = {p.name for p in se.ports or [] if p.name}
    protocols = [(p.protocol or "").upper() for p in se.ports or []]
    if resolution == Resolution.NONE and endpoints:
        issues.error("spec.endpoints", "no endpoints should be provided for resolution type NONE")
    for i, ep in enumerate(endpoints):
        path = f"spec.endpoints[{i}]"
        address = ep.address or ""
        if (
            resolution == Resolution.STATIC
            and address
            and not (is_ip(address) or address.startswith("unix://"))
        ):
            issues.error(f"{path}.address", f"endpoint address {address!r} is not a valid IP address")
        elif (
            resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
            and address
            and not is_ip(address)
            and not address.startswith("unix://")
            and (problem := check_fqdn(address))
        ):
            issues.error(f"{path}.address", problem)
        if address.startswith("unix://") and len(se.ports or []) != 1:
            issues.error(f"{path}.address", "exactly one service port is required with a unix:// endpoint")
        check_workload_entry(ep, path, issues, service_ports=service_ports, in_service_entry=True)
    if resolution == Resolution.DNS and not endpoints:
        for i, host in enumerate(hosts):
            if host.startswith("*"):
                issues.error(
                    f"spec.hosts[{i}]",
                    "hosts must be FQDNs (no wildcard) for DNS resolution without endpoints",
                )
    if resolution == Resolution.DNS_ROUND_ROBIN and len(endpoints) > 1:
        issues.error("spec.endpoints", "DNS_ROUND_ROBIN allows at most one endpoint")
    if resolution == Resolution.DYNAMIC_DNS:
        if any(not h.startswith("*") for h in hosts):
            issues.error("spec.hosts", "DYNAMIC_DNS requires wildcard hosts")
        if se.addresses:
            issues.error("spec.addresses", "DYNAMIC_DNS does not allow addresses")
        if endpoints:
            issues.error("spec.endpoints", "DYNAMIC_DNS does not allow endpoints")
        for i, proto in enumerate(protocols):
            if proto not in ("HTTP", "HTTPS", "TLS", "GRPC", "HTTP2"):
                issues.error(
                    f"spec.ports[{i}].protocol", "DYNAMIC_DNS requires HTTP, TLS, GRPC or HTTP2 ports"
                )
    if resolution != Resolution.NONE and len(hosts) > 1:
        for i, proto in enumerate(protocols):
            if proto not in HTTP_PROTOCOLS and proto not in TLS_PROTOCOLS:
                issues.error(f"spec.ports[{i}]", "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    if not se.addresses and resolution != Resolution.DYNAMIC_DNS and any(p in ("TCP", "") for p in protocols):
        issues.warn(
            "spec.addresses",
            "TCP ports without addresses: traffic will be matched by port only "
            "unless address auto-allocation is enabled",
        )
