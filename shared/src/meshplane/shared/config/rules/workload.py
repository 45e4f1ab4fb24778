"""Istio's WorkloadEntry and WorkloadGroup rules (also used for ServiceEntry endpoints)."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import check_fqdn, check_unix_address, is_ip
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import check_port, check_port_name
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.service_entry import ReadinessProbe, WorkloadEntry, WorkloadGroup
from meshplane.shared.config.rules.context import ObjectContext


def check_workload_entry(
    we: WorkloadEntry,
    path: str,
    issues: Issues,
    *,
    service_ports: set[str] | None = None,
    in_service_entry: bool = False,
    in_template: bool = False,
) -> None:
    address = we.address or ""
    if not address and not in_template:
        if we.network:
            issues.warn(
                f"{path}.address", "address is empty; the workload is reached through its network gateway"
            )
        elif not in_service_entry:
            issues.error(f"{path}.address", "address must be set when network is not set")
    elif address.startswith("unix://"):
        if problem := check_unix_address(address):
            issues.error(f"{path}.address", problem)
        if we.ports:
            issues.error(f"{path}.ports", "a unix:// address must not have ports")
    elif address and not is_ip(address) and not in_service_entry and (problem := check_fqdn(address)):
        issues.error(f"{path}.address", f"address must be an IP or a DNS name: {problem}")
    for name, number in (we.ports or {}).items():
        ppath = f"{path}.ports.{name}"
        if problem := check_port_name(name):
            issues.error(ppath, problem)
        if problem := check_port(number):
            issues.error(ppath, problem)
        if service_ports is not None and name not in service_ports:
            issues.error(ppath, f"endpoint port {name!r} is not defined by the service entry's ports")
    for key, problem in label_problems(we.labels or {}):
        issues.error(f"{path}.labels.{key}", problem)
    if we.weight is not None and we.weight < 0:
        issues.error(f"{path}.weight", "weight must not be negative")


def check(we: WorkloadEntry, ctx: ObjectContext, issues: Issues) -> None:
    check_workload_entry(we, "spec", issues)


def check_group(wg: WorkloadGroup, ctx: ObjectContext, issues: Issues) -> None:
    if wg.template is None:
        issues.error("spec.template", "template is required")
    else:
        if wg.template.address:
            issues.error("spec.template.address", "address is not allowed in a WorkloadGroup template")
        check_workload_entry(wg.template, "spec.template", issues, in_template=True)
    if wg.metadata is not None:
        for key, problem in label_problems(wg.metadata.labels or {}):
            issues.error(f"spec.metadata.labels.{key}", problem)
    if wg.probe is not None:
        _check_probe(wg.probe, "spec.probe", issues)


def _check_probe(probe: ReadinessProbe, path: str, issues: Issues) -> None:
    for field, alias in (
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("period_seconds", "periodSeconds"),
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        value = getattr(probe, field)
        if value is not None and value < 0:
            issues.error(f"{path}.{alias}", f"{alias} must not be negative")
    kinds = [n for n in ("http_get", "tcp_socket", "exec", "grpc") if getattr(probe, n) is not None]
    if len(kinds) != 1:
        issues.error(path, "exactly one of httpGet, tcpSocket, exec or grpc must be set")
    if probe.http_get is not None and (probe.http_get.port is None or check_port(probe.http_get.port)):
        issues.error(f"{path}.httpGet.port", "httpGet port must be in the range 1..65535")
    if probe.tcp_socket is not None and (probe.tcp_socket.port is None or check_port(probe.tcp_socket.port)):
        issues.error(f"{path}.tcpSocket.port", "tcpSocket port must be in the range 1..65535")
    if probe.exec is not None and not probe.exec.command:
        issues.error(f"{path}.exec.command", "exec probe must have a command")
    if probe.grpc is not None and (probe.grpc.port is None or check_port(probe.grpc.port)):
        issues.error(f"{path}.grpc.port", "grpc port must be in the range 1..65535")
