"""Citadel and the node agent come back by themselves: a killed Citadel keeps its root, a killed agent
re-serves on the same SDS socket (its stale socket removed), and both keep working on the bus after
nats-server is killed and restarted on the same port (announcements refreshed, trust watch resumed).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess, ServiceProcess
from meshplane.citadel.testing.bus import on_bus
from meshplane.citadel.testing.roots import reissued_root
from meshplane.citadel.testing.sds import root_served, sds_secret
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.natsserver import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST_REFRESH = {"MESHPLANE_COMPONENT_REFRESH_SECONDS": "0.5", "CITADEL_CA_KEY_TYPE": "ec"}


def kill(proc: ServiceProcess) -> None:
    """SIGKILL, as a crash or the OOM killer would: nothing is cleaned up."""
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)


def serves(socket: Path, name: str) -> bool:
    try:
        return bool(sds_secret(socket, name).name)
    except grpc.RpcError:
        return False


def test_killed_citadel_keeps_its_root(tmp_path: Path) -> None:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    token = make_token(tmp_path / "ca", "default", "a", "istio-ca", 3600)
    agent = NodeAgentProcess(tmp_path / "agent", citadel.target, tmp_path / "ca" / "root-cert.pem", token)
    try:
        root = citadel.root_pem()
        kill(citadel)
        citadel.start()
        assert citadel.root_pem() == root
        assert citadel.log().count("creating a self-signed") == 1  # only on the very first start
        # a certificate issued by the restarted Citadel chains to the same root
        agent.start()
        agent.wait_for(
            lambda: serves(agent.socket, "default"), 30, "a certificate from the restarted Citadel"
        )
        assert root_served(agent.socket).strip() == root.decode().strip()
    finally:
        agent.stop()
        citadel.stop()


def test_killed_node_agent_reserves_on_the_same_socket(tmp_path: Path) -> None:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    token = make_token(tmp_path / "ca", "default", "a", "istio-ca", 3600)
    agent = NodeAgentProcess(tmp_path / "agent", citadel.target, tmp_path / "ca" / "root-cert.pem", token)
    try:
        agent.start()
        agent.wait_for(lambda: serves(agent.socket, "default"), 30, "the first certificate")
        first = sds_secret(agent.socket, "default").tls_certificate.certificate_chain.inline_bytes
        kill(agent)
        assert agent.socket.exists()  # the killed agent left its socket behind
        assert not serves(agent.socket, "default")
        agent.start()
        agent.wait_for(lambda: serves(agent.socket, "default"), 30, "the restarted agent serving")
        again = sds_secret(agent.socket, "default").tls_certificate.certificate_chain.inline_bytes
        assert again and again != first  # a fresh key and certificate, on the same path
        assert "serving SDS on " + str(agent.socket) in agent.log()
    finally:
        agent.stop()
        citadel.stop()


def test_citadel_and_agent_keep_working_after_nats_restarts(tmp_path: Path) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    bus_args = ["--nats-url", nats.url]
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", args=bus_args, env=FAST_REFRESH)
    agent: NodeAgentProcess | None = None
    try:
        citadel.start()
        token = make_token(tmp_path / "ca", "default", "a", "istio-ca", 3600)
        agent = NodeAgentProcess(
            tmp_path / "agent",
            citadel.target,
            tmp_path / "ca" / "root-cert.pem",
            token,
            bus_args,
            FAST_REFRESH,
        )
        agent.start()
        root = citadel.root_pem().decode().strip()
        agent.wait_for(lambda: root_served(agent.socket).strip() == root, 30, "the bus root served")

        nats.stop()
        restarted = time.time_ns()
        nats.start()

        async def refreshed_since(bus: Bus) -> set[str]:
            records = await Buckets(bus).components.items()
            return {r.component for r in records.values() if r.updated.ToNanoseconds() > restarted}

        agent.wait_for(
            lambda: {"citadel", "node-agent"} <= on_bus(nats.url, refreshed_since),
            30,
            "both to refresh their records on the restarted bus",
        )
        # The agent's trust watch resumed: a bundle with a second root reaches its ROOTCA.
        other = reissued_root(tmp_path / "ca")  # a rotated root: signed with the current root's key

        async def publish(bus: Bus) -> None:
            bundle = status_pb2.TrustBundle(
                trust_domain="cluster.local", root_certs_pem=[root, other], version="test-two-roots"
            )
            await Buckets(bus).trust.put("cluster.local", bundle)

        on_bus(nats.url, publish)
        agent.wait_for(lambda: other in root_served(agent.socket), 30, "the new bundle served")
        assert citadel.proc is not None and citadel.proc.poll() is None
    finally:
        if agent is not None:
            agent.stop()
        citadel.stop()
        nats.stop()
