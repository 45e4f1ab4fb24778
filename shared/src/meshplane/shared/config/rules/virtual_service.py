"""Istio's VirtualService rules: hosts, gateways, delegates, tls/tcp routes, unreachable routes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from pydantic import BaseModel

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
from meshplane.shared.config.models.base import IstioModel
from meshplane.shared.config.models.virtual_service import VirtualService
from meshplane.shared.config.rules.context import ObjectContext
from meshplane.shared.config.rules.http_route import check_http_route
from meshplane.shared.config.rules.notapplied import NOT_APPLIED
from meshplane.shared.config.rules.routing import (
    applies_to_mesh,
    check_gateway_name,
    check_route_destinations,
)


def check(vs: VirtualService, ctx: ObjectContext, issues: Issues) -> None:
    hosts = vs.hosts or []
    is_delegate = not hosts
    if is_delegate:
        # A VirtualService without hosts is a delegate: only http routes, reached from a root's delegate.
        for field, what in (("gateways", "gateways"), ("tls", "tls routes"), ("tcp", "tcp routes")):
            if getattr(vs, field):
                issues.error(
                    "spec.hosts",
                    f"virtual service must have at least one host (a delegate virtual "
                    f"service, which has none, must have no {what})",
                )
    mesh = applies_to_mesh(vs.gateways)
    for i, host in enumerate(hosts):
        path = f"spec.hosts[{i}]"
        if host == "*" and mesh:
            issues.error(
                path, "wildcard host * is not allowed for virtual services bound to the mesh gateway"
            )
        elif not is_ip(host) and (problem := check_wildcard_domain(host)):
            issues.error(path, problem)
        for j in range(i):
            if hosts_overlap(hosts[j], host):
                issues.error(path, f"duplicate hosts in virtual service: {hosts[j]} & {host}")
                break
    for i, gw in enumerate(vs.gateways or []):
        check_gateway_name(gw, f"spec.gateways[{i}]", issues)
    if not vs.http and not vs.tcp and not vs.tls:
        issues.error("spec", "http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(vs.http or []):
        check_http_route(route, f"spec.http[{i}]", issues, gateway_bound=not mesh, in_delegate=is_delegate)
    _check_tls(vs, hosts, mesh, issues)
    _check_tcp(vs, issues)
    for i, problem in export_to_problems(vs.export_to or [], ctx.namespace, allow_none=False):
        issues.error(f"spec.exportTo[{i}]", problem)
    for field in ("http", "tls", "tcp"):
        warn_unreachable(getattr(vs, field) or [], f"spec.{field}", issues)


_LEAVES = (str, int, bool)


def _freeze(value: object) -> Hashable:
    """A hashable stand-in for ``value``: equal exactly when the JSON (``sort_keys``) forms are.

    Models become tuples of their field values in declaration order (the field set is fixed per
    class, so an unset field's ``None`` lines up with the same ``None``); maps become sorted item
    tuples, so key order does not matter, as with ``json.dumps(..., sort_keys=True)``. The
    match models' leaves are str / int / bool held in fields of one type each (pydantic coerces
    ``port: true`` to ``1``), so Python equality of the leaves is JSON equality.
    """
    if isinstance(value, BaseModel):
        return tuple(
            [v if v is None or v.__class__ in _LEAVES else _freeze(v) for v in value.__dict__.values()]
        )
    if isinstance(value, dict):
        return tuple(sorted([(k, _freeze(v)) for k, v in value.items()]))
    if isinstance(value, list):
        return tuple([_freeze(v) for v in value])
    return value


def match_key(match: IstioModel) -> Hashable:
    """Identity of one route match, ignoring its ``name``: what the duplicate-match warning compares.

    Equal exactly when ``json.dumps(match.model_dump(mode="json", exclude_none=True,
    exclude={"name"}), sort_keys=True)`` is, at a fraction of the cost.
    """
    return tuple(
        [
            v if v is None or v.__class__ in _LEAVES else _freeze(v)
            for k, v in match.__dict__.items()
            if k != "name"
        ]
    )


def _match_bucket(match: IstioModel) -> Hashable:
    """A cheap part of ``match_key`` (the HTTP ``uri``): matches in different buckets never equal."""
    uri = getattr(match, "uri", None)
    return None if uri is None else (uri.exact, uri.prefix, uri.regex)


def warn_unreachable(routes: Sequence[IstioModel], path: str, issues: Issues) -> None:
    """Warnings Istio gives for rules that can never match (IST0130) or ineffective matches (IST0131)."""
    route_matches: list[list[IstioModel]] = [list(getattr(r, "match", None) or []) for r in routes]
    # A match alone in its bucket equals no other match: it needs no full key (the common case).
    buckets = Counter(_match_bucket(m) for matches in route_matches for m in matches)
    seen: dict[Hashable, int] = {}
    catch_all: int | None = None
    for i, matches in enumerate(route_matches):
        if matches and catch_all is not None:
            # Istio only reports a second match-less rule; any rule after a catch-all is as dead.
            issues.warn(
                f"{path}[{i}]",
                f"rule #{i} is unreachable: rule #{catch_all} before it has no matches and takes all",
            )
            continue
        if not matches:
            if catch_all is not None:
                issues.warn(
                    f"{path}[{i}]",
                    f"rule #{i} not used (only the last rule can have no matches; "
                    f"rule #{catch_all} has none)",
                )
            catch_all = i
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            if buckets[_match_bucket(match)] == 1:
                continue
            key = match_key(match)
            if key in seen:
                issues.warn(
                    f"{path}[{i}].match[{j}]",
                    f"match #{j} is not used (duplicate match in rule #{seen[key]})",
                )
                duplicates += 1
            else:
                seen[key] = i
        if duplicates == len(matches):
            issues.warn(f"{path}[{i}]", f"rule #{i} not used (all matches used by prior rules)")


def _check_l4_match_common(
    subnets: list[str] | None,
    port: int | None,
    labels: dict[str, str] | None,
    gateways: list[str] | None,
    path: str,
    issues: Issues,
) -> None:
    for i, subnet in enumerate(subnets or []):
        if problem := check_ip_or_cidr(subnet):
            issues.error(f"{path}.destinationSubnets[{i}]", problem)
    if port is not None and port != 0 and (problem := check_port(port)):
        issues.error(f"{path}.port", problem)
    for key, problem in label_problems(labels or {}):
        issues.error(f"{path}.sourceLabels.{key}", problem)
    for i, gw in enumerate(gateways or []):
        check_gateway_name(gw, f"{path}.gateways[{i}]", issues)


def _check_tls(vs: VirtualService, hosts: list[str], mesh: bool, issues: Issues) -> None:
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
                    if is_ip(sni):
                        issues.warn(
                            spath,
                            f"using an IP address ({sni!r}) goes against the SNI spec and most "
                            "clients do not support this",
                        )
                    else:
                        issues.error(spath, problem)
                elif not any(host_is_subset(sni, h) for h in hosts):
                    issues.error(
                        spath,
                        f"SNI host {sni!r} is not a compatible subset of any of the virtual "
                        f"service hosts: [{', '.join(hosts)}]",
                    )
            _check_l4_match_common(
                match.destination_subnets, match.port, match.source_labels, match.gateways, mpath, issues
            )
        check_route_destinations(route.route, path, issues)


def _check_tcp(vs: VirtualService, issues: Issues) -> None:
    for i, route in enumerate(vs.tcp or []):
        path = f"spec.tcp[{i}]"
        for j, match in enumerate(route.match or []):
            mpath = f"{path}.match[{j}]"
            _check_l4_match_common(
                match.destination_subnets, match.port, match.source_labels, match.gateways, mpath, issues
            )
            if match.source_subnet and (problem := check_ip_or_cidr(match.source_subnet)):
                issues.error(f"{mpath}.sourceSubnet", problem)
            elif match.source_subnet:
                issues.warn(f"{mpath}.sourceSubnet", f"{NOT_APPLIED}: sourceSubnet")
        check_route_destinations(route.route, path, issues)
