"""One node agent serving two workloads (as a per-node DaemonSet does): each Envoy presents its own
workload token on its SDS streams and gets a certificate for its own identity."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.citadel.testing import (
    CitadelProcess,
    EnvoyProcess,
    NodeAgentProcess,
    ServiceProcess,
    client_bootstrap,
    server_bootstrap,
    with_sds_token,
)
from meshplane.ctl.token import make_token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_ID = "spiffe://cluster.local/ns/shop/sa/frontend"
SERVER_ID = "spiffe://cluster.local/ns/shop/sa/cart"


def test_per_node_agent_issues_each_workload_its_own_identity(tmp_path: Path, app_port: int) -> None:
    started: list[ServiceProcess] = []
    try:
        citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        started.append(citadel)
        agent = NodeAgentProcess(tmp_path / "node", citadel.target, tmp_path / "ca" / "root-cert.pem", None)
        agent.start()
        started.append(agent)
        frontend = make_token(tmp_path / "ca", "shop", "frontend", "istio-ca", 3600)
        cart = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
        c_admin, c_listen, s_admin, s_listen = EnvoyProcess.ports(4)
        server = EnvoyProcess(
            tmp_path / "server-envoy",
            with_sds_token(
                server_bootstrap(s_admin, s_listen, app_port, agent.socket, "cluster.local"), cart
            ),
            s_admin,
        )
        client = EnvoyProcess(
            tmp_path / "client-envoy",
            with_sds_token(client_bootstrap(c_admin, c_listen, s_listen, agent.socket, SERVER_ID), frontend),
            c_admin,
        )
        for envoy in (server, client):
            envoy.start()
            started.append(envoy)
        for envoy in (server, client):
            envoy.wait_ready()
        response = httpx.get(f"http://127.0.0.1:{c_listen}/", timeout=10)
        assert response.status_code == 200
        assert f"URI={CLIENT_ID}" in response.text
        assert client.cert_uris() == {CLIENT_ID}
        assert server.cert_uris() == {SERVER_ID}
    finally:
        for proc in reversed(started):
            proc.stop()


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
