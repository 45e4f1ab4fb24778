"""Istio's VirtualService rules: hosts, gateways, delegates, tls/tcp routes, unreachable routes."""

from __future__ import annotations

from meshplane.shared.config.checks.export_to import export_to_problems
from meshplane.shared.config.checks.hosts import (
    check_ip_or_cidr,
    check_wildcard_domain,
    host_is_subset,
    hosts_overlap,
    is_ip,
)
from meshplane.shared.config.checks.labels import label_problems
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.virtual_service import VirtualService
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.http_route import check_http_route
from meshplane.shared.config.rules.routing import (
    applies_to_mesh,
    check_gateway_name,
    check_route_destinations,
)


def check(vs: VirtualService, ctx: ObjectContext, issues: Issues) -> None:
    hosts = vs.hosts or []
    is_delegate = not hosts and not vs.gateways and not vs.tls and not vs.tcp
    if not hosts and not is_delegate:
        issues.error("spec.hosts", "virtual service must have at least one host")
    mesh = applies_to_mesh(vs.gateways)
    for i, host in enumerate(hosts):
        path = f"spec.hosts[{i}]"
        if host == "*" and mesh:
            issues.error(
                path, "wildcard host '*' is not allowed for virtual services bound to the mesh gateway"
            )
        elif not is_ip(host) and (problem := check_wildcard_domain(host)):
            issues.error(path, problem)
        for j in range(i):
            if hosts_overlap(hosts[j], host):
                issues.error(path, f"duplicate hosts in virtual service: {hosts[j]!r} and {host!r}")
                break
    for i, gw in enumerate(vs.gateways or []):
        check_gateway_name(gw, f"spec.gateways[{i}]", issues)
    if not vs.http and not vs.tcp and not vs.tls:
        issues.error("spec", "http, tcp or tls must be provided in virtual service")
    gateway_bound = not mesh
    for i, route in enumerate(vs.http or []):
        check_http_route(route, f"spec.http[{i}]", issues, gateway_bound=gateway_bound)
    _warn_unreachable(vs, issues)
    _check_tls(vs, hosts, issues)
    _check_tcp(vs, issues)
    for i, problem in export_to_problems(vs.export_to or [], ctx.namespace, allow_none=False):
        issues.error(f"spec.exportTo[{i}]", problem)


def _warn_unreachable(vs: VirtualService, issues: Issues) -> None:
    seen: list[tuple[int, str]] = []
    catch_all: int | None = None
    for i, route in enumerate(vs.http or []):
        path = f"spec.http[{i}]"
        if catch_all is not None:
            issues.warn(
                path, f"route is unreachable: http[{catch_all}] has no match and matches every request"
            )
            continue
        matches = route.match or []
        if not matches or any(m.model_dump(exclude_none=True, exclude={"name"}) == {} for m in matches):
            catch_all = i
        for j, match in enumerate(matches):
            key = repr(sorted(match.model_dump(exclude_none=True, exclude={"name"}, mode="json").items()))
            earlier = next((idx for idx, k in seen if k == key), None)
            if earlier is not None:
                issues.warn(f"{path}.match[{j}]", f"duplicate match, already matched by http[{earlier}]")
            seen.append((i, key))


def _check_l4_match_common(
    subnets: list[str] | None, port: int | None, labels: dict[str, str] | None, path: str, issues: Issues
) -> None:
    for i, subnet in enumerate(subnets or []):
        if problem := check_ip_or_cidr(subnet):
            issues.error(f"{path}.destinationSubnets[{i}]", problem)
    if port is not None and (problem := check_port(port)):
        issues.error(f"{path}.port", problem)
    for key, problem in label_problems(labels or {}):
        issues.error(f"{path}.sourceLabels.{key}", problem)


def _check_tls(vs: VirtualService, hosts: list[str], issues: Issues) -> None:
    for i, route in enumerate(vs.tls or []):
        path = f"spec.tls[{i}]"
        if not route.match:
            issues.error(f"{path}.match", "TLS route must have at least one match condition")
        for j, match in enumerate(route.match or []):
            mpath = f"{path}.match[{j}]"
            if not match.sni_hosts:
                issues.error(f"{mpath}.sniHosts", "TLS match must have at least one SNI host")
            for k, sni in enumerate(match.sni_hosts or []):
                spath = f"{mpath}.sniHosts[{k}]"
                if problem := check_wildcard_domain(sni):
                    issues.error(spath, problem)
                elif hosts and not any(host_is_subset(sni, h) for h in hosts):
                    issues.error(spath, f"SNI host {sni!r} is not a subset of any virtual service host")
            _check_l4_match_common(match.destination_subnets, match.port, match.source_labels, mpath, issues)
        check_route_destinations(route.route, path, issues)


def _check_tcp(vs: VirtualService, issues: Issues) -> None:
    for i, route in enumerate(vs.tcp or []):
        path = f"spec.tcp[{i}]"
        for j, match in enumerate(route.match or []):
            mpath = f"{path}.match[{j}]"
            _check_l4_match_common(match.destination_subnets, match.port, match.source_labels, mpath, issues)
            if match.source_subnet is not None and (problem := check_ip_or_cidr(match.source_subnet)):
                issues.error(f"{mpath}.sourceSubnet", problem)
        check_route_destinations(route.route, path, issues)
