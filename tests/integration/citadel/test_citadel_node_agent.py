"""One node agent serving two workloads (as a per-node DaemonSet does): each Envoy presents its own
workload token on its SDS streams and gets a certificate for its own identity. Also the agent's
metrics, and its record in the components bucket while it is on the bus."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.components import announced
from meshplane.shared.testing.scrape import scrape

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"
SERVER_ID = "spiffe://cluster.local/ns/default/sa/server"


def test_per_node_agent_issues_each_workload_its_own_identity(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh(per_node=True)
    assert mesh.client_agent is mesh.server_agent  # one agent, one socket, two workloads
    response = httpx.get(mesh.url, timeout=10)
    assert response.status_code == 200
    assert f"URI={CLIENT_ID}" in response.text
    assert mesh.client_envoy.cert_uris() == {CLIENT_ID}
    assert mesh.server_envoy.cert_uris() == {SERVER_ID}


def test_per_node_agent_refuses_streams_without_a_token(tmp_path: Path) -> None:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    agent = NodeAgentProcess(tmp_path / "node", citadel.target, tmp_path / "ca" / "root-cert.pem", None)
    try:
        agent.start()
        with grpc.insecure_channel(f"unix:{agent.socket}") as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            request = discovery_pb2.DiscoveryRequest(resource_names=["default"])
            with pytest.raises(grpc.RpcError) as err:
                stub.FetchSecrets(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
            response = stub.FetchSecrets(request, metadata=[("authorization", f"Bearer {token}")], timeout=10)
            assert response.type_url.endswith("tls.v3.Secret")  # accepted (it may still be empty)
    finally:
        agent.stop()
        citadel.stop()


def _scrape(port: int) -> dict[str, float]:
    return scrape(port, "meshplane_nodeagent_")


def test_node_agent_metrics_count_certificates_streams_and_expiry(tmp_path: Path) -> None:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    port = free_port()
    token = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
    agent = NodeAgentProcess(
        tmp_path / "node",
        citadel.target,
        tmp_path / "ca" / "root-cert.pem",
        token,
        args=["--monitoring-addr", f"127.0.0.1:{port}", "--cert-ttl", "1h"],
    )
    try:
        agent.start()
        issued = 'meshplane_nodeagent_certificates_total{kind="issued"}'
        agent.wait_for(lambda: _scrape(port).get(issued, 0) >= 1, 30, "a certificate counted as issued")
        before = _scrape(port)
        assert before["meshplane_nodeagent_sds_streams"] == 0
        assert before["meshplane_nodeagent_csr_failures_total"] == 0
        assert 3000 < before["meshplane_nodeagent_cert_expiry_seconds"] <= 3600
        done = threading.Event()

        def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
            yield discovery_pb2.DiscoveryRequest(resource_names=["default"])
            done.wait(60)  # keep the stream open, as Envoy does

        with grpc.insecure_channel(f"unix:{agent.socket}") as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            stream = stub.StreamSecrets(requests())
            first = next(stream)
            assert first.resources
            agent.wait_for(
                lambda: _scrape(port)["meshplane_nodeagent_sds_streams"] == 1, 30, "one open stream"
            )
            stream.cancel()
            done.set()
        agent.wait_for(lambda: _scrape(port)["meshplane_nodeagent_sds_streams"] == 0, 30, "the stream closed")
    finally:
        agent.stop()
        citadel.stop()


def test_node_agent_announces_itself_on_the_bus_for_meshctl_version(tmp_path: Path) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    port = free_port()
    token = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
    args = ["--nats-url", nats.url, "--monitoring-addr", f"127.0.0.1:{port}"]
    agent = NodeAgentProcess(
        tmp_path / "node", citadel.target, tmp_path / "ca" / "root-cert.pem", token, args
    )
    try:
        agent.start()
        agent.wait_for(
            lambda: bool(announced(nats.url, "node-agent")), 20, "the node agent's record on the bus"
        )
        assert announced(nats.url, "node-agent") == [
            {"sds": str(agent.socket), "monitoring": f"127.0.0.1:{port}"}
        ]
        agent.stop()
        assert announced(nats.url, "node-agent") == []  # withdrawn on a clean stop
    finally:
        agent.stop()
        citadel.stop()
        nats.stop()
