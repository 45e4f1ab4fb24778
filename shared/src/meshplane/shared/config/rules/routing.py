"""Rule pieces shared by routing kinds: destinations, string matches, gateway references, TLS files."""

from __future__ import annotations

from collections.abc import Sequence

from meshplane.shared.config.checks.hosts import (
    check_fqdn,
    check_wildcard_domain,
    is_istio_label,
)
from meshplane.shared.config.checks.ports import check_port
from meshplane.shared.config.checks.regex import check_regex
from meshplane.shared.config.issues import Issues
from meshplane.shared.config.models.virtual_service import (
    Destination,
    HTTPRouteDestination,
    RouteDestination,
    StringMatch,
)


def check_destination(dest: Destination, path: str, issues: Issues) -> None:
    if dest.host == "*":
        issues.error(f"{path}.host", "wildcard '*' is not allowed as a destination host")
    elif problem := check_wildcard_domain(dest.host):
        issues.error(f"{path}.host", problem)
    if dest.subset is not None and not is_istio_label(dest.subset):
        issues.error(f"{path}.subset", f"subset name {dest.subset!r} is invalid (must be a DNS-1123 label)")
    if dest.port is not None and dest.port.number is not None and (problem := check_port(dest.port.number)):
        issues.error(f"{path}.port.number", problem)


def check_string_match(match: StringMatch, path: str, issues: Issues, *, allow_regex: bool = True) -> None:
    """One of exact / prefix / regex; prefix and regex non-empty; regex RE2 (not in delegates)."""
    exact, prefix, regex = match.exact, match.prefix, match.regex
    if (exact is not None) + (prefix is not None) + (regex is not None) > 1:
        set_fields = [n for n, v in (("exact", exact), ("prefix", prefix), ("regex", regex)) if v is not None]
        issues.error(path, f"only one of exact, prefix or regex may be set (found {', '.join(set_fields)})")
    if prefix == "":
        issues.error(f"{path}.prefix", "prefix string match should not be empty")
    if regex is not None:
        if not allow_regex:
            issues.error(f"{path}.regex", "regex match is not supported in a delegate virtual service")
        elif problem := check_regex(regex):
            issues.error(f"{path}.regex", problem)


def check_gateway_name(name: str, path: str, issues: Issues) -> None:
    """``mesh``, ``ns/name`` (two DNS-1123 labels) or a legacy FQDN name (warned)."""
    if name == "mesh":
        return
    if "/" in name:
        namespace, _, gw = name.partition("/")
        if not is_istio_label(namespace) or not is_istio_label(gw):
            issues.error(
                path, f"invalid gateway reference {name!r}: namespace and name must be DNS-1123 labels"
            )
        return
    if "." in name:
        name_part, _, namespace = name.partition(".")
        namespace = namespace.split(".", 1)[0]
        issues.warn(
            path,
            f"using legacy gatewayName format {name!r}; prefer the <namespace>/<name> format: "
            f"'{namespace}/{name_part}'",
        )
    if problem := check_fqdn(name):
        issues.error(path, f"invalid gateway name {name!r}: {problem}")


def applies_to_mesh(gateways: list[str] | None) -> bool:
    return not gateways or "mesh" in gateways


def percentage_problem(value: float | None) -> str | None:
    if value is None:
        return None
    if value < 0 or value > 100:
        return f"percentage {value} must be in the range 0..100"
    return None


def check_route_destinations(
    routes: Sequence[HTTPRouteDestination | RouteDestination] | None, path: str, issues: Issues
) -> None:
    """``route`` of an http/tls/tcp route: at least one destination; weights >= 0, not all 0 (HEAD)."""
    if not routes:
        issues.error(f"{path}.route", "route must have at least one destination")
        return
    total = 0
    for i, dest in enumerate(routes):
        check_destination(dest.destination, f"{path}.route[{i}].destination", issues)
        if dest.weight is not None and dest.weight < 0:
            issues.error(f"{path}.route[{i}].weight", f"weight {dest.weight} must not be negative")
        total += dest.weight or 0
    if len(routes) > 1 and total == 0:
        issues.error(f"{path}.route", "total destination weight = 0")
