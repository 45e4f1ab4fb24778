"""Istio's ServiceEntry rules: hosts, addresses, ports, resolution modes and endpoints."""

from __future__ import annotations

from meshplane.shared.config.checks.export_to import export_to_problems
from meshplane.shared.config.checks.hosts import (
    check_ip_or_cidr,
    check_wildcard_domain,
    is_cidr,
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
from meshplane.shared.config.models.service_entry import Resolution, ServiceEntry
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.selectors import check_selector_labels
from meshplane.shared.config.rules.workload import check_workload_entry

_DYNAMIC_DNS_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TLS", "GRPC", "HTTP2"})


def check(se: ServiceEntry, ctx: ObjectContext, issues: Issues) -> None:
    resolution = se.resolution or Resolution.NONE
    if se.workload_selector is not None:
        check_selector_labels(se.workload_selector.labels, "spec.workloadSelector.labels", issues)
        if se.endpoints is not None:
            issues.error("spec.workloadSelector", "only one of workloadSelector or endpoints is allowed")
        if resolution != Resolution.STATIC:
            issues.warn(
                "spec.workloadSelector", f"workloadSelector should not be set when resolution is {resolution}"
            )
    _check_hosts(se, issues)
    for i, address in enumerate(se.addresses or []):
        path = f"spec.addresses[{i}]"
        if problem := check_ip_or_cidr(address):
            issues.error(path, problem)
        elif is_cidr(address) and resolution not in (Resolution.NONE, Resolution.STATIC):
            issues.error(path, "CIDR addresses are allowed only for NONE/STATIC resolution types")
    _check_ports(se, resolution, issues)
    _check_resolution(se, resolution, issues)
    for i, problem in export_to_problems(se.export_to or [], ctx.namespace, allow_none=True):
        issues.error(f"spec.exportTo[{i}]", problem)


def _check_hosts(se: ServiceEntry, issues: Issues) -> None:
    if not se.hosts:
        issues.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(se.hosts or []):
        path = f"spec.hosts[{i}]"
        if host == "*":
            issues.error(path, "invalid host *")
            continue
        if problem := check_wildcard_domain(host):
            issues.error(path, problem)
        if problem := partial_wildcard_problem(host):
            issues.warn(path, problem)


def _check_ports(se: ServiceEntry, resolution: Resolution, issues: Issues) -> None:
    names: dict[str, int] = {}
    numbers: dict[int, int] = {}
    for i, port in enumerate(se.ports or []):
        path = f"spec.ports[{i}]"
        name = port.name or ""
        if name in names:
            issues.error(
                f"{path}.name", f"service entry port name {name!r} already defined by ports[{names[name]}]"
            )
        names.setdefault(name, i)
        if port.number in numbers:
            issues.error(
                f"{path}.number",
                f"service entry port {port.number} already defined by ports[{numbers[port.number]}]",
            )
        numbers.setdefault(port.number, i)
        if port.target_port:
            if problem := check_port(port.target_port):
                issues.error(f"{path}.targetPort", problem)
            if resolution == Resolution.NONE:
                issues.warn(f"{path}.targetPort", "targetPort has no effect when resolution mode is NONE")
        if not se.addresses and (port.protocol or "TCP") == "TCP":
            issues.warn(
                f"{path}.protocol",
                "addresses are required for ports serving TCP (or unset) protocol "
                "when address auto-allocation is not enabled",
            )
        if problem := check_port_name(name):
            issues.error(f"{path}.name", problem)
        if port.protocol and (problem := check_protocol(port.protocol)):
            issues.error(f"{path}.protocol", problem)
        if problem := check_port(port.number):
            issues.error(f"{path}.number", problem)


def _check_resolution(se: ServiceEntry, resolution: Resolution, issues: Issues) -> None:
    endpoints = se.endpoints or []
    hosts = se.hosts or []
    service_ports = {p.name or "" for p in se.ports or []}
    protocols = [(p.protocol or "").upper() for p in se.ports or []]
    if resolution == Resolution.NONE and endpoints:
        issues.error("spec.endpoints", "no endpoints should be provided for resolution type NONE")
    for i, ep in enumerate(endpoints):
        check_workload_entry(
            ep,
            f"spec.endpoints[{i}]",
            issues,
            service_ports=service_ports,
            allow_fqdn=resolution != Resolution.STATIC,
        )
    if resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        if not endpoints:
            for i, host in enumerate(hosts):
                if host.startswith("*"):
                    issues.error(
                        f"spec.hosts[{i}]",
                        f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}",
                    )
        if resolution == Resolution.DNS_ROUND_ROBIN and len(endpoints) > 1:
            issues.error(
                "spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}"
            )
        if se.addresses and len(hosts) > 1 and any(p in ("TCP", "") for p in protocols):
            issues.warn(
                "spec.hosts",
                "service entry can not have more than one host specified simultaneously "
                "with address and tcp port",
            )
    if resolution == Resolution.DYNAMIC_DNS:
        if any(not h.startswith("*") for h in hosts):
            issues.error("spec.hosts", "DYNAMIC_DNS resolution requires wildcard hosts")
        if se.addresses:
            issues.error("spec.addresses", "DYNAMIC_DNS resolution does not allow addresses")
        if endpoints:
            issues.error("spec.endpoints", "DYNAMIC_DNS resolution does not allow endpoints")
        for i, proto in enumerate(protocols):
            if proto not in _DYNAMIC_DNS_PROTOCOLS:
                issues.error(
                    f"spec.ports[{i}].protocol", "DYNAMIC_DNS requires HTTP, HTTPS, TLS, GRPC or HTTP2 ports"
                )
    if resolution != Resolution.NONE and len(hosts) > 1:
        for i, proto in enumerate(protocols):
            if proto not in HTTP_PROTOCOLS and proto not in TLS_PROTOCOLS:
                issues.error(f"spec.ports[{i}]", "multiple hosts provided with non-HTTP, non-TLS ports")
                break
