"""The plugin as a runtime runs it (subprocess, CNI_* env, NetConf with a real chained prevResult)
against real network namespaces, veth pairs and iptables, fed by a real agent process."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshplane.cni.rules.iptables import parse_save, render
from meshplane.cni.testing import (
    AgentProcess,
    agent,
    netconf,
    pod_netns,
    pod_object,
    prev_result,
    requires_root,
    run_plugin,
)

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(120)]

TESTDATA = Path(__file__).parents[3] / "services" / "cni" / "tests" / "testdata"
VARIANTS: dict[str, dict[str, str]] = json.loads((TESTDATA / "variants.json").read_text())
BAD = {"traffic.sidecar.istio.io/excludeInboundPorts": "80,eighty"}


@pytest.fixture(scope="module")
def node_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    pods = [pod_object(name, annotations=ann) for name, ann in VARIANTS.items()]
    pods.append(pod_object("web"))
    pods.append(pod_object("bad-annotation", annotations=BAD))
    not_injected = pod_object("plain")
    del not_injected["metadata"]["annotations"]["sidecar.istio.io/status"]
    pods.append(not_injected)
    with agent(tmp_path_factory.mktemp("agent"), pods, "--repair=false") as a:
        yield a


def ours(netns_save: str) -> str:
    return render(parse_save(netns_save))


def save(pod: object, v6: bool = False) -> str:
    tool = "ip6tables-save" if v6 else "iptables-save"
    return "".join(pod.exec(tool, "-t", t) for t in ("nat", "mangle"))  # type: ignore[attr-defined]


CASES = [(name, "ipv4") for name in VARIANTS] + [("dual-stack", "ipv6"), ("tproxy", "ipv6")]


@pytest.mark.parametrize(("variant", "family"), CASES)
def test_add_applies_exactly_the_golden_rules(node_agent: AgentProcess, variant: str, family: str) -> None:
    v6 = family == "ipv6"
    with pod_netns(ipv6=v6) as pod:
        prev = prev_result(pod, ipv6=v6)
        conf = netconf(node_agent.run_dir, prev)
        code, out = run_plugin("ADD", conf, pod.path, ("default", variant))
        assert code == 0, out
        assert out == prev, "prevResult is passed through unchanged"
        golden = (TESTDATA / f"{variant}.{family}.golden").read_text()
        assert ours(save(pod, v6)) == golden
        code, out = run_plugin("ADD", conf, pod.path, ("default", variant))
        assert code == 0, out
        assert ours(save(pod, v6)) == golden, "a second ADD gives the same rules"
        assert run_plugin("CHECK", conf, pod.path, ("default", variant)) == (0, None)


def test_del_removes_only_our_rules(node_agent: AgentProcess) -> None:
    with pod_netns() as pod:
        pod.exec("iptables", "-t", "nat", "-N", "KUBE-OTHER")
        pod.exec("iptables", "-t", "nat", "-A", "KUBE-OTHER", "-j", "RETURN")
        pod.exec("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "-j", "KUBE-OTHER")
        pod.exec("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT")
        before = pod.save("nat") + pod.save("mangle")
        conf = netconf(node_agent.run_dir, prev_result(pod), version="0.4.0")
        assert run_plugin("ADD", conf, pod.path)[0] == 0
        after_add = pod.save("nat")
        assert "-A PREROUTING -p udp -j KUBE-OTHER" in after_add and ":ISTIO_OUTPUT - [0:0]" in after_add
        assert run_plugin("DEL", conf, pod.path) == (0, None)
        assert pod.save("nat") + pod.save("mangle") == before
        assert run_plugin("DEL", conf, pod.path) == (0, None), "DEL twice is fine"


def test_check_detects_tampering(node_agent: AgentProcess) -> None:
    with pod_netns() as pod:
        conf = netconf(node_agent.run_dir, prev_result(pod))
        assert run_plugin("ADD", conf, pod.path)[0] == 0
        assert run_plugin("CHECK", conf, pod.path) == (0, None)
        pod.exec(
            "iptables",
            "-t",
            "nat",
            "-D",
            "ISTIO_OUTPUT",
            "-m",
            "owner",
            "--uid-owner",
            "1337",
            "-j",
            "RETURN",
        )
        code, out = run_plugin("CHECK", conf, pod.path)
        assert code == 1 and out["code"] == 102
        assert "--uid-owner 1337 -j RETURN" in out["details"] and pod.path in out["msg"]
        pod.exec("iptables", "-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT")
        code, out = run_plugin("CHECK", conf, pod.path)
        assert code == 1 and "-A OUTPUT -p tcp -j ISTIO_OUTPUT" in out["details"]
        assert run_plugin("ADD", conf, pod.path)[0] == 0
        assert run_plugin("CHECK", conf, pod.path) == (0, None)


def test_bad_annotation_fails_closed_with_no_rules(node_agent: AgentProcess) -> None:
    with pod_netns() as pod:
        conf = netconf(node_agent.run_dir, prev_result(pod), version="0.3.1")
        code, out = run_plugin("ADD", conf, pod.path, ("default", "bad-annotation"))
        assert code == 1 and out["code"] == 100
        assert "excludeInboundPorts" in out["msg"] and "eighty" in out["msg"]
        assert not [line for line in pod.save("nat") if "ISTIO" in line]


def test_missing_netns_is_an_error_naming_it(node_agent: AgentProcess, tmp_path: Path) -> None:
    gone = str(tmp_path / "netns-gone")
    code, out = run_plugin("ADD", netconf(node_agent.run_dir, None), gone)
    assert code == 1 and out["code"] == 3 and gone in out["msg"]


def test_pod_unknown_to_the_agent_fails_closed(node_agent: AgentProcess) -> None:
    with pod_netns() as pod:
        code, out = run_plugin(
            "ADD", netconf(node_agent.run_dir, prev_result(pod)), pod.path, ("default", "ghost")
        )
        assert code == 1 and out["code"] == 11 and "default/ghost" in out["msg"]
        assert not [line for line in pod.save("nat") if "ISTIO" in line]


def test_not_injected_pod_is_left_alone(node_agent: AgentProcess) -> None:
    with pod_netns() as pod:
        prev = prev_result(pod)
        code, out = run_plugin(
            "ADD", netconf(node_agent.run_dir, prev, version="0.3.1"), pod.path, ("default", "plain")
        )
        assert (code, out) == (0, prev)
        assert not [line for line in pod.save("nat") if "ISTIO" in line]


def test_tproxy_mode_sets_up_and_removes_policy_routing(node_agent: AgentProcess) -> None:
    with pod_netns(ipv6=True) as pod:
        conf = netconf(node_agent.run_dir, prev_result(pod, ipv6=True))
        assert run_plugin("ADD", conf, pod.path, ("default", "tproxy"))[0] == 0
        for flag in ("-4", "-6"):
            assert "fwmark 0x539 lookup 133" in pod.exec("ip", flag, "rule", "show")
            assert "local default dev lo" in pod.exec("ip", flag, "route", "show", "table", "133")
        assert run_plugin("CHECK", conf, pod.path, ("default", "tproxy")) == (0, None)
        pod.exec("ip", "-4", "rule", "del", "fwmark", "1337", "lookup", "133")
        code, out = run_plugin("CHECK", conf, pod.path, ("default", "tproxy"))
        assert code == 1 and "fwmark 1337 lookup 133" in out["details"]
        assert run_plugin("ADD", conf, pod.path, ("default", "tproxy"))[0] == 0
        assert run_plugin("CHECK", conf, pod.path, ("default", "tproxy")) == (0, None)
        assert run_plugin("DEL", conf, pod.path, ("default", "tproxy")) == (0, None)
        for flag in ("-4", "-6"):
            assert "lookup 133" not in pod.exec("ip", flag, "rule", "show")
            assert pod.exec("ip", flag, "route", "show", "table", "133").strip() == ""
        assert not [line for line in pod.save("mangle") if "ISTIO" in line]


def test_failure_in_the_second_family_rolls_the_first_back(node_agent: AgentProcess) -> None:
    """A foreign rule that pins a stale ISTIO_ chain in the IPv6 nat table makes the IPv6 restore
    fail (the chain cannot be deleted): the IPv4 rules already applied are taken away again."""
    with pod_netns(ipv6=True) as pod:
        pod.exec("ip6tables", "-t", "nat", "-N", "ISTIO_STALE")
        pod.exec("ip6tables", "-t", "nat", "-N", "KUBE-OTHER")
        pod.exec("ip6tables", "-t", "nat", "-A", "KUBE-OTHER", "-j", "ISTIO_STALE")
        conf = netconf(node_agent.run_dir, prev_result(pod, ipv6=True))
        code, out = run_plugin("ADD", conf, pod.path, ("default", "dual-stack"))
        assert code == 1 and out["code"] == 101 and "ip6tables-restore" in out["msg"]
        assert not [line for line in pod.save("nat") if "ISTIO" in line], "no half-applied IPv4 rules"
        assert "-A KUBE-OTHER -j ISTIO_STALE" in pod.save("nat", v6=True)


def test_installed_plugin_works_alone_with_the_hosts_python(node_agent: AgentProcess, tmp_path: Path) -> None:
    # what the runtime on a node executes: the file the agent put in the CNI bin dir, without the
    # agent's virtualenv (copied elsewhere, run by the first python3 the preamble finds)
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    plugin = host_bin / "meshplane-cni"
    shutil.copy2(node_agent.bin_dir / "meshplane-cni", plugin)
    assert sys.prefix.encode() not in plugin.read_bytes(), "no path into the agent's environment"
    with pod_netns() as pod:
        prev = prev_result(pod)
        conf = netconf(node_agent.run_dir, prev)
        code, out = run_plugin("ADD", conf, pod.path, ("default", "default"), plugin=plugin)
        assert code == 0, out
        assert ours(save(pod)) == (TESTDATA / "default.ipv4.golden").read_text()
        assert run_plugin("DEL", conf, pod.path, ("default", "default"), plugin=plugin) == (0, None)
        assert not [line for line in pod.save("nat") if "ISTIO" in line]
