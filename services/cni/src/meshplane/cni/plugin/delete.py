"""CNI DEL: remove our chains and jumps from the pod's netns, and nothing else.

DEL must succeed when there is nothing left to clean (netns already gone, rules never applied).
"""

from __future__ import annotations

import os

from meshplane.cni.netns import NetnsError
from meshplane.cni.plugin import agentclient
from meshplane.cni.plugin.add import enter_netns
from meshplane.cni.plugin.errors import RULES_FAILED, CNIError
from meshplane.cni.plugin.netconf import Invocation, NetConf
from meshplane.cni.rules.iptables import IPV4, IPV6, parse_save, restore_delete
from meshplane.cni.rules.settings import CaptureSettings


def cmd_del(invocation: Invocation, conf: NetConf) -> None:
    """Run DEL."""
    if invocation.netns and os.path.exists(invocation.netns):
        netns = enter_netns(invocation)
        try:
            defaults = CaptureSettings()
            for family in (IPV4, IPV6):
                current = parse_save(netns.save(family))
                netns.restore(family, restore_delete(current))
                if current["mangle"].chains:  # TPROXY mode also set up policy routing
                    netns.set_tproxy_routing(family, defaults.tproxy_mark, defaults.tproxy_table, False)
        except NetnsError as exc:
            raise CNIError(RULES_FAILED, f"removing capture rules: {exc}") from None
    if invocation.pod is not None:
        namespace, name = invocation.pod
        event: dict[str, object] = {
            "type": "DEL",
            "containerId": invocation.container_id,
            "namespace": namespace,
            "name": name,
        }
        try:
            agentclient.report(conf.agent_socket, event)
        except agentclient.AgentUnavailable:
            pass  # nothing to keep consistent: the pod is going away
