"""Gateway analyzers: ports the selected workloads do not expose (IST0104) and gateways that
claim the same selector, port and host (IST0145)."""

from __future__ import annotations

from collections.abc import Mapping

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, host_matches, selects


def _selector(gw: Resource) -> dict[str, str]:
    sel = gw.spec.get("selector")
    return {str(k): str(v) for k, v in sel.items()} if isinstance(sel, Mapping) else {}


def _servers(gw: Resource) -> list[tuple[int, list[str]]]:
    out = []
    for server in gw.spec.get("servers") or []:
        if not isinstance(server, Mapping) or not isinstance(server.get("port"), Mapping):
            continue
        number = server["port"].get("number")
        if isinstance(number, int):
            out.append((number, [str(h).split("/", 1)[-1] for h in server.get("hosts") or []]))
    return out


def _label_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def check_ports(ctx: Context) -> None:
    """IST0104: a gateway server port that none of the selected pods exposes."""
    pods = ctx.kind("Pod")
    if not pods:
        return
    for gw in ctx.kind("Gateway"):
        selector = _selector(gw)
        chosen = [p for p in pods if selector and selects(selector, p.str_map("labels"))]
        if not chosen:
            continue
        exposed: set[int] = set()
        for pod in chosen:
            for container in pod.spec.get("containers") or []:
                for port in (container.get("ports") or []) if isinstance(container, Mapping) else []:
                    if isinstance(port, Mapping) and isinstance(port.get("containerPort"), int):
                        exposed.add(port["containerPort"])
        for number, _ in _servers(gw):
            if number not in exposed:
                ctx.report(
                    m.GATEWAY_PORT_NOT_ON_WORKLOAD,
                    gw,
                    f"The gateway refers to a port that is not exposed on the workload "
                    f"(pod selector {_label_text(selector)}; port {number})",
                )


def check_conflicts(ctx: Context) -> None:
    """IST0145: two gateways with the same selector, port and an overlapping host."""
    gateways = ctx.kind("Gateway")
    for i, gw in enumerate(gateways):
        for other in gateways[:i] + gateways[i + 1 :]:
            if _selector(gw) != _selector(other):
                continue
            for number, hosts in _servers(gw):
                for other_number, other_hosts in _servers(other):
                    if number != other_number:
                        continue
                    shared = sorted(
                        h for h in hosts if any(host_matches(h, o) or host_matches(o, h) for o in other_hosts)
                    )
                    if shared:
                        ctx.report(
                            m.CONFLICTING_GATEWAYS,
                            gw,
                            f"Conflict with gateways {other.namespace}/{other.name} (workload selector "
                            f"{_label_text(_selector(gw))}, port {number}, hosts {', '.join(shared)}).",
                        )
