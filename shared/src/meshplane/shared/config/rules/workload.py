"""Istio's WorkloadEntry and WorkloadGroup rules (also used for ServiceEntry endpoints)."""

from __future__ import annotations

from meshplane.shared.config.checks.headers import check_header_name
from meshplane.shared.config.checks.hosts import check_fqdn, check_unix_address, is_ip
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import check_port, check_port_name
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.service_entry import ReadinessProbe, WorkloadEntry, WorkloadGroup
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.envoy_filter import NOT_APPLIED


def check_workload_entry(
    we: WorkloadEntry,
    path: str,
    issues: Issues,
    *,
    service_ports: set[str] | None = None,
    allow_fqdn: bool = True,
) -> None:
    """A WorkloadEntry spec, or a ServiceEntry endpoint (``service_ports`` = the entry's port names)."""
    address = we.address or ""
    if not address:
        if not we.network:
            issues.error(f"{path}.address", "address is required")
            return
        issues.warn(f"{path}.address", f"address is unset with network {we.network!r}")
    if address.startswith("unix://"):
        if problem := check_unix_address(address):
            issues.error(f"{path}.address", problem)
        if we.ports:
            issues.error(f"{path}.ports", f"unix endpoint {address} must not include ports")
        if service_ports is not None and len(service_ports) != 1:
            issues.error(f"{path}.address", "exactly 1 service port required for unix endpoints")
    elif address and not is_ip(address):
        if not allow_fqdn:
            issues.error(f"{path}.address", f"endpoint address {address!r} is not a valid IP address")
        elif check_fqdn(address):
            issues.error(
                f"{path}.address", f"endpoint address {address!r} is not a valid FQDN or an IP address"
            )
    for name, number in (we.ports or {}).items():
        ppath = f"{path}.ports.{name}"
        if service_ports is not None and name not in service_ports:
            issues.error(ppath, f"endpoint port {name!r} is not defined by the service entry")
        if problem := check_port_name(name):
            issues.error(ppath, problem)
        if problem := check_port(number):
            issues.error(ppath, problem)
    for key, problem in label_problems(we.labels or {}):
        issues.error(f"{path}.labels.{key}", problem)
    if we.weight is not None and we.weight < 0:
        issues.error(f"{path}.weight", "weight must not be negative")


def check(we: WorkloadEntry, ctx: ObjectContext, issues: Issues) -> None:
    check_workload_entry(we, "spec", issues)


def check_group(wg: WorkloadGroup, ctx: ObjectContext, issues: Issues) -> None:
    """The template's address and ports are filled in per VM, so it is not checked as an entry.

    Applied: Pilot registers a WorkloadEntry from the template and metadata for each VM proxy that
    connects with the group's name, and ``meshctl workload-probe`` runs the probe (httpGet,
    tcpSocket, exec) and reports health. A grpc probe is not run: it is warned."""
    if wg.template is None:
        issues.error("spec.template", "template is required")
        return
    if wg.metadata is not None:
        for key, problem in label_problems(wg.metadata.labels or {}):
            issues.error(f"spec.metadata.labels.{key}", f"invalid labels: {problem}")
    if wg.probe is not None:
        _check_probe(wg.probe, "spec.probe", issues)
        if wg.probe.grpc is not None:
            issues.warn(
                "spec.probe.grpc",
                f"{NOT_APPLIED}: probe.grpc (meshctl workload-probe runs httpGet, tcpSocket and exec probes)",
            )


def _check_probe(probe: ReadinessProbe, path: str, issues: Issues) -> None:
    for field, alias in (
        ("period_seconds", "periodSeconds"),
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        value = getattr(probe, field)
        if value is not None and value < 0:
            issues.error(f"{path}.{alias}", f"{alias} must be non-negative")
    kinds = [n for n in ("http_get", "tcp_socket", "exec", "grpc") if getattr(probe, n) is not None]
    if not kinds:
        issues.error(path, "one of httpGet, tcpSocket, exec or grpc must be set")
    elif len(kinds) > 1:
        issues.error(path, "only one of httpGet, tcpSocket, exec or grpc may be set")
    if probe.grpc is not None and (problem := check_port(probe.grpc.port or 0)):
        issues.error(f"{path}.grpc.port", problem)
    if probe.http_get is not None:
        get = probe.http_get
        if problem := check_port(get.port or 0):
            issues.error(f"{path}.httpGet.port", problem)
        if get.scheme and get.scheme not in ("HTTP", "HTTPS"):
            issues.error(f"{path}.httpGet.scheme", "httpGet.scheme must be one of 'HTTPS', 'HTTP'")
        for i, header in enumerate(get.http_headers or []):
            if problem := check_header_name(header.name or ""):
                issues.error(f"{path}.httpGet.httpHeaders[{i}].name", problem)
    if probe.tcp_socket is not None and (problem := check_port(probe.tcp_socket.port or 0)):
        issues.error(f"{path}.tcpSocket.port", problem)
    if probe.exec is not None and not probe.exec.command:
        issues.error(f"{path}.exec.command", "exec.command is required")
