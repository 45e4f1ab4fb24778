"""VirtualService analyzers: missing gateway/host/subset/port (IST0101), mesh host conflicts (IST0109),
unreachable rules (IST0130), ineffective matches (IST0131), hosts not in the bound Gateway (IST0132)
and a missing port towards a multi-port service (IST0112)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import (
    DOMAIN_SUFFIX,
    Context,
    Resource,
    fqdn,
    go_list,
    host_matches,
    mappings,
    selects,
    str_dict,
    strs,
)

_ROUTE_SECTIONS = ("http", "tls", "tcp")


def _gateway_ref(ref: str, namespace: str) -> tuple[str, str]:
    """``ns/name``, ``name`` (in the VirtualService's namespace) or legacy ``name.ns[.svc.cluster.local]``."""
    ns, sep, name = ref.partition("/")
    if sep:
        return ns, name
    parts = ref.split(".")
    return (parts[1], parts[0]) if len(parts) > 1 else (namespace, ref)


def _destinations(vs: Resource) -> Iterator[Mapping[str, Any]]:
    for section in _ROUTE_SECTIONS:
        for rule in mappings(vs.spec.get(section)):
            for route in mappings(rule.get("route")):
                if isinstance(route.get("destination"), Mapping):
                    yield route["destination"]
            if isinstance(rule.get("mirror"), Mapping):
                yield rule["mirror"]
            for mirror in mappings(rule.get("mirrors")):
                if isinstance(mirror.get("destination"), Mapping):
                    yield mirror["destination"]


def _has_subset(ctx: Context, host: str, subset: str, namespace: str) -> bool:
    for dr in ctx.kind("DestinationRule"):
        dr_host = fqdn(str(dr.spec.get("host", "")), dr.namespace)
        if not host_matches(dr_host, host):
            continue
        for s in mappings(dr.spec.get("subsets")):
            if isinstance(s, Mapping) and s.get("name") == subset:
                return True
    return False


def check_references(ctx: Context) -> None:
    """IST0101 for gateways, destination hosts and subsets a VirtualService names but nobody defines."""
    for vs in ctx.kind("VirtualService"):
        for ref in strs(vs.spec.get("gateways")):
            if ref == "mesh":
                continue
            ns, name = _gateway_ref(str(ref), vs.namespace)
            if ctx.find("Gateway", ns, name) is None:
                ctx.report(m.REFERENCED_RESOURCE_NOT_FOUND, vs, f'Referenced gateway not found: "{ref}"')
        for dest in _destinations(vs):
            host = fqdn(str(dest.get("host", "")), vs.namespace)
            if not host or not ctx.host_known(host):
                ctx.report(
                    m.REFERENCED_RESOURCE_NOT_FOUND, vs, f'Referenced host not found: "{dest.get("host")}"'
                )
            # istioctl checks the subset against DestinationRules whether or not the host exists.
            subset = dest.get("subset")
            if subset and not _has_subset(ctx, host, str(subset), vs.namespace):
                ctx.report(
                    m.REFERENCED_RESOURCE_NOT_FOUND,
                    vs,
                    f'Referenced host+subset in destinationrule not found: "{dest.get("host")}+{subset}"',
                )


def _export_to(vs: Resource) -> set[str] | None:
    """The namespaces a VirtualService is visible in (None = all, the default)."""
    targets = strs(vs.spec.get("exportTo"))
    if not targets or "*" in targets:
        return None
    return {vs.namespace if t == "." else t for t in targets}


def _visible_together(a: Resource, b: Resource) -> bool:
    """Whether some namespace sees both VirtualServices (only then do their hosts clash)."""
    sa, sb = _export_to(a), _export_to(b)
    return sa is None or sb is None or bool(sa & sb)


def check_mesh_host_conflicts(ctx: Context) -> None:
    """IST0109: two VirtualServices bound to the mesh gateway declare the same host."""
    owners: dict[str, list[Resource]] = {}
    for vs in ctx.kind("VirtualService"):
        gateways = strs(vs.spec.get("gateways"))
        if gateways and "mesh" not in gateways:
            continue
        for host in {fqdn(str(h), vs.namespace) for h in strs(vs.spec.get("hosts"))}:
            owners.setdefault(host, []).append(vs)
    for host, vss in sorted(owners.items()):
        clashing = [v for v in vss if any(o is not v and _visible_together(v, o) for o in vss)]
        if len(clashing) < 2:
            continue
        names = ",".join(f"{v.namespace}/{v.name}" for v in clashing)
        for vs in clashing:
            ctx.report(
                m.CONFLICTING_MESH_GATEWAY_VS_HOSTS,
                vs,
                f"The VirtualServices {names} associated with mesh gateway define the same host {host} "
                "which can lead to undefined behavior. This can be fixed by merging the conflicting "
                "VirtualServices into a single resource.",
            )


def _canonical(match: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in match.items() if k != "name"}, sort_keys=True)


def _name(item: Mapping[str, Any], index: int, named: bool) -> str:
    """Istio's label for a rule or match: its quoted name (HTTP only), else ``#index``."""
    return json.dumps(str(item["name"])) if named and item.get("name") else f"#{index}"


def check_rules(ctx: Context) -> None:
    """IST0130 (a rule that can never match) and IST0131 (a match that repeats an earlier one).

    Istio's reading: only the last rule may have no match (a later match-less rule is unused), a
    match equal (names aside) to an earlier one is ineffective, and a rule whose every match is
    ineffective is unused.
    """
    for vs in ctx.kind("VirtualService"):
        for section in _ROUTE_SECTIONS:
            rules = mappings(vs.spec.get(section))
            named = section == "http"
            seen: dict[str, int] = {}
            catch_all = False
            for index, rule in enumerate(rules):
                label = _name(rule, index, named)
                matches = mappings(rule.get("match"))
                if not matches:
                    if catch_all:
                        reason = "only the last rule can have no matches"
                        ctx.report(
                            m.VS_UNREACHABLE_RULE, vs, f"VirtualService rule {label} not used ({reason})."
                        )
                    catch_all = True
                    continue
                duplicates = 0
                for mi, match in enumerate(matches):
                    key = _canonical(match)
                    if key not in seen:
                        seen[key] = index
                        continue
                    duplicates += 1
                    earlier = _name(rules[seen[key]], seen[key], named)
                    ctx.report(
                        m.VS_INEFFECTIVE_MATCH,
                        vs,
                        f"VirtualService rule {label} match {_name(match, mi, named)} is not used "
                        f"(duplicate/overlapping match in rule {earlier}).",
                    )
                if duplicates == len(matches):
                    reason = "all matches used by prior rules"
                    ctx.report(m.VS_UNREACHABLE_RULE, vs, f"VirtualService rule {label} not used ({reason}).")


def _gateway_hosts(gw: Resource, vs_namespace: str) -> list[str]:
    hosts: list[str] = []
    for server in mappings(gw.spec.get("servers")):
        for h in strs(server.get("hosts")):
            ns, sep, host = str(h).rpartition("/")
            if not sep or ns in ("*", vs_namespace) or (ns == "." and gw.namespace == vs_namespace):
                hosts.append(host)
    return hosts


def check_gateway_hosts(ctx: Context) -> None:
    """IST0132: none of a VirtualService's hosts is among the hosts of a Gateway it binds to."""
    for vs in ctx.kind("VirtualService"):
        vs_hosts = strs(vs.spec.get("hosts"))
        for ref in strs(vs.spec.get("gateways")):
            if ref == "mesh":
                continue
            ns, name = _gateway_ref(str(ref), vs.namespace)
            gw = ctx.find("Gateway", ns, name)
            if gw is None:
                continue
            gw_hosts = _gateway_hosts(gw, vs.namespace)
            if not any(host_matches(g, h) or host_matches(h, g) for g in gw_hosts for h in vs_hosts):
                ctx.report(
                    m.VS_HOST_NOT_IN_GATEWAY,
                    vs,
                    f"one or more host {go_list(vs_hosts)} defined in VirtualService "
                    f"{vs.namespace}/{vs.name} not found in Gateway {gw.namespace}/{gw.name}.",
                )


def _service_ports(ctx: Context, host: str) -> list[int] | None:
    """The ports of the Service or ServiceEntry behind ``host`` (None when it is neither)."""
    for svc in ctx.kind("Service"):
        if not svc.group and host == f"{svc.name}.{svc.namespace}.{DOMAIN_SUFFIX}":
            return [p["port"] for p in mappings(svc.spec.get("ports")) if isinstance(p.get("port"), int)]
    for se in ctx.kind("ServiceEntry"):
        if any(host_matches(str(h), host) for h in strs(se.spec.get("hosts"))):
            return [p["number"] for p in mappings(se.spec.get("ports")) if isinstance(p.get("number"), int)]
    return None


def check_destination_ports(ctx: Context) -> None:
    """IST0112 (no port towards a multi-port service) and IST0101 (a port the service lacks)."""
    for vs in ctx.kind("VirtualService"):
        for dest in _destinations(vs):
            raw = str(dest.get("host", ""))
            ports = _service_ports(ctx, fqdn(raw, vs.namespace))
            if ports is None:
                continue
            port = dest.get("port")
            number = port.get("number") if isinstance(port, Mapping) else None
            if number is None and len(ports) > 1:
                ctx.report(
                    m.VS_DESTINATION_PORT_REQUIRED,
                    vs,
                    f'This VirtualService routes to a service "{raw}" that exposes multiple ports '
                    f"{go_list(sorted(ports))}. "
                    "Specifying a port in the destination is required to disambiguate.",
                )
            elif number is not None and ports and number not in ports:
                ctx.report(
                    m.REFERENCED_RESOURCE_NOT_FOUND, vs, f'Referenced host:port not found: "{raw}:{number}"'
                )


CLAIM_PREFIX = "@request.auth.claims"


def _claim_keys(vs: Resource) -> list[str]:
    keys: list[str] = []
    for rule in mappings(vs.spec.get("http")):
        for match in mappings(rule.get("match")):
            for field in ("headers", "withoutHeaders"):
                headers = match.get(field)
                if isinstance(headers, Mapping):
                    keys += [str(k) for k in headers if str(k).startswith(CLAIM_PREFIX)]
    return sorted(set(keys))


def _has_request_authn(ctx: Context, pod: Resource) -> bool:
    for ra in ctx.kind("RequestAuthentication"):
        sel = ra.spec.get("selector")
        labels = str_dict(sel.get("matchLabels")) if isinstance(sel, Mapping) else {}
        if ra.namespace in (pod.namespace, ctx.root_namespace) and selects(labels, pod.str_map("labels")):
            return True
    return False


def check_jwt_claim_routes(ctx: Context) -> None:
    """IST0149: routing on JWT claims through a gateway whose pods no RequestAuthentication covers."""
    for vs in ctx.kind("VirtualService"):
        keys = _claim_keys(vs)
        if not keys:
            continue
        for ref in strs(vs.spec.get("gateways")):
            ns, name = _gateway_ref(str(ref), vs.namespace)
            gw = ctx.find("Gateway", ns, name) if ref != "mesh" else None
            if gw is None:
                continue
            for pod in ctx.pods(str_dict(gw.spec.get("selector"))):
                if not _has_request_authn(ctx, pod):
                    ctx.report(
                        m.JWT_CLAIM_ROUTING_WITHOUT_AUTHN,
                        vs,
                        f"The virtual service uses the JWT claim based routing (key: {keys[0]}) but found no "
                        f"request authentication for the gateway ({gw.namespace}/{gw.name}) pod "
                        f"({pod.namespace}/{pod.name}). The request authentication must first be applied "
                        "for the gateway pods to validate the JWT token and make the claims available for "
                        "routing.",
                    )
