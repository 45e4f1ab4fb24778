"""CNI ADD: decide whether the pod is captured, then apply its rules inside its netns.

Fails closed: a pod that may need capture but whose metadata cannot be fetched from the node
agent is an error (the runtime retries), never a silent skip.  Annotations are checked before
anything is applied, and if the second address family fails the first is rolled back, so a
failed ADD leaves no half-applied rules.
"""

from __future__ import annotations

from typing import NamedTuple

from meshplane.cni.netns import Netns, NetnsError, join
from meshplane.cni.plugin import agentclient
from meshplane.cni.plugin.errors import (
    INVALID_ANNOTATION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    RULES_FAILED,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CNIError,
)
from meshplane.cni.plugin.netconf import Invocation, NetConf, pod_addresses
from meshplane.cni.rules.iptables import IPV4, IPV6, parse_save, restore_add, restore_delete
from meshplane.cni.rules.pods import PodInfo, skip_reason
from meshplane.cni.rules.settings import AnnotationError, CaptureSettings, settings_from_annotations


class Decision(NamedTuple):
    """What to do for a pod: ``settings`` when captured, else the ``reason`` it is skipped."""

    pod: tuple[str, str] | None
    settings: CaptureSettings | None
    reason: str
    families: tuple[int, ...] = (IPV4,)


def decide(invocation: Invocation, conf: NetConf) -> Decision:
    """Fetch the pod from the agent and apply Istio's skip rules and annotations."""
    pod_ref = invocation.pod
    if pod_ref is None:
        return Decision(None, None, "no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS")
    namespace, name = pod_ref
    if namespace in conf.exclude_namespaces:
        return Decision(pod_ref, None, f"namespace {namespace} is excluded")
    try:
        data = agentclient.fetch_pod(conf.agent_socket, namespace, name)
    except ValueError as exc:
        raise CNIError(INVALID_ENVIRONMENT, f"CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME: {exc}") from None
    except agentclient.AgentUnavailable as exc:
        raise CNIError(
            TRY_AGAIN_LATER, f"pod {namespace}/{name}: {exc}; failing closed instead of skipping capture"
        ) from None
    if data is None:
        raise CNIError(
            TRY_AGAIN_LATER, f"pod {namespace}/{name} is not known to the node agent yet; try again later"
        )
    try:
        pod = PodInfo.from_json(data)
    except ValueError as exc:
        raise CNIError(INVALID_CONFIG, f"pod {namespace}/{name} from the node agent: {exc}") from None
    reason = skip_reason(pod, conf.exclude_namespaces)
    if reason is not None:
        return Decision(pod_ref, None, reason)
    try:
        settings = settings_from_annotations(pod.annotations)
    except AnnotationError as exc:
        raise CNIError(INVALID_ANNOTATION, f"pod {namespace}/{name}: {exc}") from None
    addresses = pod_addresses(conf.prev_result, invocation.args) or list(pod.ips)
    families = (IPV4, IPV6) if any(":" in a for a in addresses) else (IPV4,)
    return Decision(pod_ref, settings, "captured", families)


def enter_netns(invocation: Invocation) -> Netns:
    """Join the pod's netns (this process only lives for one call)."""
    if not invocation.netns:
        raise CNIError(UNKNOWN_CONTAINER, "CNI_NETNS is empty: cannot find the pod's network namespace")
    try:
        join(invocation.netns)
    except NetnsError as exc:
        raise CNIError(UNKNOWN_CONTAINER, str(exc)) from None
    return Netns(invocation.netns, joined=True)


def apply(netns: Netns, settings: CaptureSettings, families: tuple[int, ...]) -> None:
    """Apply the rules per family; on failure undo the families already applied."""
    done: list[int] = []
    tproxy = settings.mode == "TPROXY"
    try:
        for family in families:
            current = parse_save(netns.save(family))
            done.append(family)
            netns.restore(family, restore_add(settings, current, family))
            if tproxy or current["mangle"].chains:  # also undo routing of an earlier TPROXY ADD
                netns.set_tproxy_routing(family, settings.tproxy_mark, settings.tproxy_table, tproxy)
    except NetnsError as exc:
        for family in done:
            try:
                netns.restore(family, restore_delete(parse_save(netns.save(family))))
                netns.set_tproxy_routing(family, settings.tproxy_mark, settings.tproxy_table, False)
            except NetnsError:
                pass
        raise CNIError(RULES_FAILED, f"applying capture rules: {exc}") from None


def cmd_add(invocation: Invocation, conf: NetConf) -> dict[str, object]:
    """Run ADD and return the result to print (prevResult passed through unchanged)."""
    decision = decide(invocation, conf)
    if decision.settings is not None:
        apply(enter_netns(invocation), decision.settings, decision.families)
    if decision.pod is not None:
        _report(conf, invocation, decision)
    if conf.prev_result is not None:
        return dict(conf.prev_result)
    return {"cniVersion": conf.cni_version, "dns": {}}


def _report(conf: NetConf, invocation: Invocation, decision: Decision) -> None:
    namespace, name = decision.pod or ("", "")
    event: dict[str, object] = {
        "type": "ADD",
        "containerId": invocation.container_id,
        "netns": invocation.netns,
        "namespace": namespace,
        "name": name,
        "captured": decision.settings is not None,
        "reason": decision.reason,
    }
    try:
        agentclient.report(conf.agent_socket, event)
    except agentclient.AgentUnavailable:
        pass  # the rules are in place; the agent's repair pass will find the pod either way
