"""Capture fails closed (issue 14 item 4): the agent installs its plugin without waiting for the
bus, and the plugin stays installed while the agent is stopped, killed or restarted, so the
container runtime keeps calling it (and it refuses pods while the agent is away) instead of
starting pods without capture."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from meshplane.cni.testing import AgentProcess, agent, run_plugin, wait_until
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.components import announced

BRIDGE = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "bridge", "bridge": "cni0"}]}


def chained(conf: Path) -> list[str]:
    return [p["type"] for p in json.loads(conf.read_text())["plugins"]]


def installed(a: AgentProcess, conf: Path) -> bool:
    return chained(conf) == ["bridge", "meshplane-cni"] and os.access(a.bin_dir / "meshplane-cni", os.X_OK)


def test_the_plugin_stays_installed_when_the_agent_stops_is_killed_or_restarts(tmp_path: Path) -> None:
    conf = tmp_path / "net.d" / "10-bridge.conflist"
    conf.parent.mkdir()
    conf.write_text(json.dumps(BRIDGE))
    with agent(tmp_path, []) as a:
        wait_until(lambda: installed(a, conf), 30, "the plugin chained into the node's config")
        assert a.stop() == 0  # SIGTERM: a clean stop, as a DaemonSet rollout does
    assert installed(a, conf)
    # With the agent away, the runtime still calls the plugin, which refuses the pod.
    config = json.loads(conf.read_text())
    entry = {"cniVersion": "1.0.0", "name": config["name"], **config["plugins"][-1]}
    code, answer = run_plugin("ADD", entry, netns="/run/netns/none", plugin=a.bin_dir / "meshplane-cni")
    assert code != 0 and answer["code"] != 0, answer
    with agent(tmp_path, []) as again:  # a restart finds it in place and does not chain it twice
        wait_until(lambda: installed(again, conf), 30, "the plugin still chained once")
        again.proc.send_signal(signal.SIGKILL)
        again.proc.wait(30)
    assert installed(again, conf)


def test_without_a_reachable_bus_the_plugin_is_installed_at_once_and_the_agent_keeps_running(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "net.d" / "10-bridge.conflist"
    conf.parent.mkdir()
    conf.write_text(json.dumps(BRIDGE))
    port = free_port()  # nothing listens here yet
    with agent(tmp_path, [], f"--nats-url=nats://127.0.0.1:{port}") as a:
        # The bus client gives up after its 10 s connect timeout; the plugin must not wait for it.
        wait_until(lambda: installed(a, conf), 5, "the plugin installed before any bus connection")
        wait_until(lambda: "task bus failed" in a.log.read_text(), 60, "the failed bus connection logged")
        assert a.proc.poll() is None and installed(a, conf)
        assert (a.run_dir / "agent.sock").exists()
        # The bus comes up: the supervisor's retry connects and the agent announces itself.
        nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", port=port)
        nats.start()
        try:
            wait_until(lambda: announced(nats.url, "cni-agent"), 90, "the agent's record on the bus")
        finally:
            assert a.stop() == 0
            nats.stop()
    assert installed(a, conf)
