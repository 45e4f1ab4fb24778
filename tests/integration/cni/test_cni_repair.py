"""The race before the agent was ready: an injected pod whose netns never saw the plugin's ADD is
found by its IP and repaired in place (or reported when repair is off); what happened to each
pod is published to the bus (bucket mesh-cni, key <node>.<namespace>.<pod>)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshplane.cni.agent.events import CNI_BUCKET
from meshplane.cni.plugin import agentclient
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
from meshplane.cni.testing import wait_until as wait
from meshplane.proto.bus.v1 import cni_pb2
from meshplane.shared.bus import Bus, BusOptions, TypedKV, make_key
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.components import announced

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(120)]

GOLDEN = (Path(__file__).parents[3] / "services/cni/tests/testdata/default.ipv4.golden").read_text()
Kind = cni_pb2.CNIEvent.Kind


def bus_event(url: str, node: str, namespace: str, pod: str) -> cni_pb2.CNIEvent | None:
    async def read() -> cni_pb2.CNIEvent | None:
        bus = await Bus.connect(BusOptions(url=url))
        try:
            return await TypedKV(bus, CNI_BUCKET, cni_pb2.CNIEvent).get(make_key(node, namespace, pod))
        finally:
            await bus.close()

    return asyncio.run(read())


def sweeps_done(a: AgentProcess) -> int:
    return int(str(agentclient.health(str(a.run_dir / "agent.sock"))["repair_sweeps"]))


def ours(pod: object) -> str:
    return render(parse_save(pod.exec("iptables-save", "-t", "nat")))  # type: ignore[attr-defined]


def test_pod_started_before_the_agent_is_repaired(tmp_path: Path, nats_server: NatsServer) -> None:
    with pod_netns() as pod:
        injected = pod_object("early", ip=pod.ip, nodeName="node-1")
        other_node = pod_object("elsewhere", ip=pod.ip, nodeName="node-2")
        args = ["--node-name=node-1", f"--nats-url={nats_server.url}", "--repair-interval=0.3"]
        with agent(tmp_path, [injected, other_node], *args):
            wait(lambda: ours(pod) == GOLDEN, 60, "repaired rules")
            event = wait(lambda: bus_event(nats_server.url, "node-1", "default", "early"), 30, "bus event")
            assert event.kind == Kind.REPAIRED
            assert event.netns and "ISTIO" in event.reason
            assert bus_event(nats_server.url, "node-1", "default", "elsewhere") is None
            (agent_record,) = announced(nats_server.url, "cni-agent")
            assert agent_record["node"] == "node-1" and agent_record["socket"].endswith("agent.sock")
        assert announced(nats_server.url, "cni-agent") == []  # withdrawn on a clean stop


def test_repair_off_reports_broken_pod_and_leaves_netns_alone(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with pod_netns() as pod:
        args = [f"--nats-url={nats_server.url}", "--repair=false", "--repair-interval=0.3", "--node-name=n1"]
        with agent(tmp_path, [pod_object("early", ip=pod.ip)], *args):
            event = wait(lambda: bus_event(nats_server.url, "n1", "default", "early"), 60, "bus event")
            assert event.kind == Kind.BROKEN and "no capture rules" in event.reason
            assert ours(pod) == "\n"


def test_plugin_add_is_published_and_not_repaired_twice(tmp_path: Path, nats_server: NatsServer) -> None:
    with pod_netns() as pod:
        pods = [
            pod_object("web", ip=pod.ip),
            pod_object("plain", annotations={"sidecar.istio.io/inject": "false"}),
        ]
        args = [f"--nats-url={nats_server.url}", "--node-name=n1", "--repair-interval=0.3"]
        with agent(tmp_path, pods, *args) as a:
            code, out = run_plugin("ADD", netconf(a.run_dir, prev_result(pod)), pod.path, ("default", "web"))
            assert code == 0, out
            event = wait(lambda: bus_event(nats_server.url, "n1", "default", "web"), 30, "bus event")
            assert event.kind == Kind.CAPTURED and event.netns == pod.path
            assert run_plugin("ADD", netconf(a.run_dir, None), pod.path, ("default", "plain"))[0] == 0
            skipped = wait(lambda: bus_event(nats_server.url, "n1", "default", "plain"), 30, "skip event")
            assert skipped.kind == Kind.SKIPPED and "inject" in skipped.reason
            sweeps = sweeps_done(a)
            wait(lambda: sweeps_done(a) >= sweeps + 2, 30, "two more repair sweeps")
            assert run_plugin("DEL", netconf(a.run_dir, None), pod.path, ("default", "web"))[0] == 0
            wait(
                lambda: bus_event(nats_server.url, "n1", "default", "web").kind == Kind.DELETED,  # type: ignore[union-attr]
                30,
                "delete event",
            )
            log = a.log.read_text()
        assert "REPAIRED" not in log, "a pod the plugin captured is never repaired"
