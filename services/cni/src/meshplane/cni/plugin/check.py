"""CNI CHECK: the pod's netns still holds exactly the capture rules its annotations ask for."""

from __future__ import annotations

from meshplane.cni.netns import NetnsError
from meshplane.cni.plugin.add import decide, enter_netns
from meshplane.cni.plugin.errors import INCOMPATIBLE_VERSION, RULES_FAILED, RULES_MISSING, CNIError
from meshplane.cni.plugin.netconf import Invocation, NetConf
from meshplane.cni.rules.iptables import differences, parse_save


def cmd_check(invocation: Invocation, conf: NetConf) -> None:
    """Run CHECK; a difference is a CNI error listing it."""
    if conf.cni_version in ("0.3.0", "0.3.1"):
        raise CNIError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, got {conf.cni_version}")
    decision = decide(invocation, conf)
    if decision.settings is None:
        return
    netns = enter_netns(invocation)
    problems: list[str] = []
    try:
        for family in decision.families:
            found = differences(decision.settings, parse_save(netns.save(family)), family)
            problems += [f"ipv{family} {problem}" for problem in found]
            settings = decision.settings
            if settings.mode == "TPROXY" and not netns.has_tproxy_routing(
                family, settings.tproxy_mark, settings.tproxy_table
            ):
                rule = f"fwmark {settings.tproxy_mark} lookup {settings.tproxy_table}"
                problems.append(f"ipv{family} missing policy rule: {rule}")
    except NetnsError as exc:
        raise CNIError(RULES_FAILED, f"reading capture rules: {exc}") from None
    if problems:
        raise CNIError(
            RULES_MISSING,
            f"capture rules in {invocation.netns} differ from what pod {'/'.join(decision.pod or ())} needs",
            "; ".join(problems),
        )
