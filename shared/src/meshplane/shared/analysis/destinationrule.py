"""DestinationRule analyzers: TLS without server verification (IST0128 / IST0129) and client TLS
settings that contradict the server's PeerAuthentication (IST0113, MTLSPolicyConflict), hosts no
service defines (IST0174) and subsets that select no pod (IST0173)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import (
    DOMAIN_SUFFIX,
    Context,
    Resource,
    fqdn,
    host_matches,
    mappings,
    selects,
    str_dict,
    strs,
)

_VERIFYING_MODES = ("SIMPLE", "MUTUAL")


def _tls(policy: object) -> Mapping[str, Any]:
    tls = policy.get("tls") if isinstance(policy, Mapping) else None
    return tls if isinstance(tls, Mapping) else {}


def _unverified(tls: Mapping[str, Any], dr: Resource) -> bool:
    """SIMPLE/MUTUAL without caCertificates; a credentialName counts only on a DestinationRule with a
    workloadSelector (istioctl); meshplane also accepts an explicit insecureSkipVerify."""
    return (
        tls.get("mode") in _VERIFYING_MODES
        and not tls.get("caCertificates")
        and not (tls.get("credentialName") and isinstance(dr.spec.get("workloadSelector"), Mapping))
        and not tls.get("insecureSkipVerify")
    )


def _prefix(dr: Resource, tls: Mapping[str, Any]) -> str:
    return f"DestinationRule {dr.name} in namespace {dr.namespace} has TLS mode set to {tls.get('mode')}"


def check_server_verification(ctx: Context) -> None:
    for dr in ctx.kind("DestinationRule"):
        host = str(dr.spec.get("host", ""))
        policy = dr.spec.get("trafficPolicy")
        tls = _tls(policy)
        if _unverified(tls, dr):
            ctx.report(
                m.NO_SERVER_CERT_VERIFICATION_DR,
                dr,
                f"{_prefix(dr, tls)} but no caCertificates are set to validate server identity "
                f"for host: {host}",
            )
        port_settings = policy.get("portLevelSettings") if isinstance(policy, Mapping) else None
        for pls in mappings(port_settings):
            tls = _tls(pls)
            if _unverified(tls, dr):
                port = (pls.get("port") or {}).get("number")
                ctx.report(
                    m.NO_SERVER_CERT_VERIFICATION_PORT,
                    dr,
                    f"{_prefix(dr, tls)} but no caCertificates are set to validate server identity "
                    f"for host: {host} at port {port}",
                )


def _peer_mode(ctx: Context, namespace: str) -> tuple[str, Resource] | None:
    """The namespace-wide PeerAuthentication mode, else the mesh-wide one in the root namespace."""
    for ns in (namespace, ctx.root_namespace):
        for pa in ctx.kind("PeerAuthentication"):
            if pa.namespace == ns and not pa.spec.get("selector"):
                mode = (pa.spec.get("mtls") or {}).get("mode")
                if mode in ("STRICT", "DISABLE"):
                    return str(mode), pa
    return None


def check_mtls_conflicts(ctx: Context) -> None:
    """IST0113: DISABLE towards a STRICT server, or ISTIO_MUTUAL towards a DISABLE one."""
    for dr in ctx.kind("DestinationRule"):
        client = _tls(dr.spec.get("trafficPolicy")).get("mode")
        if client not in ("DISABLE", "ISTIO_MUTUAL"):
            continue
        host = fqdn(str(dr.spec.get("host", "")), dr.namespace)
        parts = host.split(".")
        if len(parts) < 3 or not host.endswith(".svc.cluster.local"):
            continue
        server = _peer_mode(ctx, parts[1])
        if server is None:
            continue
        mode, pa = server
        if (client == "DISABLE" and mode == "STRICT") or (client == "ISTIO_MUTUAL" and mode == "DISABLE"):
            ctx.report(
                m.MTLS_POLICY_CONFLICT,
                dr,
                f"A DestinationRule and a PeerAuthentication are in conflict over mTLS for host {host}: "
                f"DestinationRule {dr.namespace}/{dr.name} sets TLS mode {client} but PeerAuthentication "
                f"{pa.namespace}/{pa.name} requires {mode}.",
            )


def _service_selector(ctx: Context, host: str) -> dict[str, str]:
    """The workload selector of the Service or ServiceEntry behind ``host`` ({} when it has none)."""
    for svc in ctx.kind("Service"):
        if not svc.group and host == f"{svc.name}.{svc.namespace}.{DOMAIN_SUFFIX}":
            return str_dict(svc.spec.get("selector"))
    for se in ctx.kind("ServiceEntry"):
        if any(host_matches(str(h), host) for h in strs(se.spec.get("hosts"))):
            ws = se.spec.get("workloadSelector")
            return str_dict(ws.get("labels")) if isinstance(ws, Mapping) else {}
    return {}


#: Node labels Pilot turns into a pod's locality, in order (region/zone/subzone).
LOCALITY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def _workload_labels(ctx: Context) -> list[dict[str, str]]:
    """The labels of every workload as Pilot matches subsets against them: Pods augmented with their
    Node's locality labels (non-empty ones) and ``kubernetes.io/hostname``; WorkloadEntries as they are."""
    nodes = {n.name: n.str_map("labels") for n in ctx.kind("Node")}
    out: list[dict[str, str]] = []
    for pod in ctx.kind("Pod"):
        labels = pod.str_map("labels")
        node = str(pod.spec.get("nodeName") or "")
        for key in LOCALITY_LABELS:
            if nodes.get(node, {}).get(key):
                labels[key] = nodes[node][key]
        if node:
            labels["kubernetes.io/hostname"] = node
        out.append(labels)
    out += [str_dict(w.spec.get("labels")) for w in ctx.kind("WorkloadEntry")]
    return out


def check_subset_pods(ctx: Context) -> None:
    """IST0174: a host no Service or ServiceEntry defines; IST0173: a subset that selects no pod."""
    for dr in ctx.kind("DestinationRule"):
        raw = str(dr.spec.get("host", ""))
        host = fqdn(raw, dr.namespace)
        if not ctx.host_known(host):
            ctx.report(
                m.UNKNOWN_DESTINATION_RULE_HOST,
                dr,
                f"The host {raw} defined in the DestinationRule does not match any services in the mesh.",
            )
            continue
        base = _service_selector(ctx, host)
        workloads = _workload_labels(ctx)
        for subset in mappings(dr.spec.get("subsets")):
            selector = base | str_dict(subset.get("labels"))
            if not any(selects(selector, labels) for labels in workloads):
                ctx.report(
                    m.DESTINATION_RULE_SUBSET_NO_PODS,
                    dr,
                    f"The Subset {subset.get('name')} defined in the DestinationRule does not select any "
                    "pods. Which may lead to 503 UH (NoHealthyUpstream).",
                )
