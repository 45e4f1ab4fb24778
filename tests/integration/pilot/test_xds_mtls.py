"""xDS over mutual TLS with the real parts: Citadel issues Pilot's certificate and the workloads'
(through their node agents), real Envoys connect with their SDS certificate and verify Pilot.

Refused: a client without a certificate (the TLS handshake fails), a proxy holding namespace A's
certificate while claiming namespace B (PERMISSION_DENIED, counted), and, on the proxy's side, a
Pilot that is not the identity the bootstrap names. Allowed: the proxy of namespace A.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.bootstrap import PILOT_SAN, BootstrapOptions
from meshplane.ctl.token import make_token
from meshplane.shared.citadelclient import CitadelClient, Credential
from meshplane.shared.natsserver import NatsServer

from .conftest import EnvoyProc, PilotProc, start_envoy, start_pilot, stop_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Mesh:
    tmp: Path
    citadel: CitadelProcess
    pilot: PilotProc

    @property
    def root(self) -> Path:
        return self.citadel.ca_dir / "root-cert.pem"

    def token(self, ns: str, sa: str) -> str:
        return make_token(self.citadel.ca_dir, ns, sa, "istio-ca", 3600)

    def agent(self, name: str, ns: str, sa: str) -> NodeAgentProcess:
        agent = NodeAgentProcess(self.tmp / name, self.citadel.target, self.root, self.token(ns, sa))
        agent.start()
        return agent

    def envoy(self, name: str, agent: NodeAgentProcess, ns: str, pilot_san: str = PILOT_SAN) -> EnvoyProc:
        opts = BootstrapOptions(
            node_id=f"sidecar~127.0.0.1~{name}.{ns}~{ns}.svc.cluster.local",
            pilots=[f"127.0.0.1:{self.pilot.grpc}"],
            sds_socket=str(agent.socket),
            namespace=ns,
            service_account="app",
            interception="NONE",
            pilot_san=pilot_san,
            xds_retry_max=1.0,
        )
        return start_envoy(self.tmp, name, opts)


@pytest.fixture
def mesh(nats_server: NatsServer, tmp_path: Path) -> Iterator[Mesh]:
    citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
    citadel.start()
    try:
        token = tmp_path / "pilot.token"
        token.write_text(make_token(citadel.ca_dir, "meshplane-system", "pilot", "istio-ca", 3600))
        root = str(citadel.ca_dir / "root-cert.pem")
        tls = ["--ca-addr", citadel.target, "--ca-root", root, "--token-file", str(token)]
        pilot = start_pilot(nats_server.url, tmp_path, "pilot-mtls", xds=tls)
        try:
            yield Mesh(tmp_path, citadel, pilot)
        finally:
            pilot.stop()
    finally:
        citadel.stop()


def workload_credential(mesh: Mesh, ns: str) -> Credential:
    token = mesh.tmp / f"{ns}.token"
    token.write_text(mesh.token(ns, "app"))
    client = CitadelClient(mesh.citadel.target, mesh.root, token, dt.timedelta(hours=1))
    return asyncio.run(client.issue())


def handshake(port: int, root: Path, cred: Credential | None, tmp: Path) -> bytes:
    """TLS 1.3 to Pilot's ADS port as a gRPC client would (h2), then read Pilot's first bytes."""
    context = ssl.create_default_context(cafile=str(root))
    context.check_hostname = False  # Pilot's certificate names a SPIFFE ID, not a host name
    context.set_alpn_protocols(["h2"])
    if cred is not None:
        (tmp / "client.pem").write_bytes(cred.chain_pem)
        (tmp / "client.key").write_bytes(cred.key_pem)
        context.load_cert_chain(tmp / "client.pem", tmp / "client.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        return tls.recv(9)  # the server's SETTINGS frame header, once it accepted the client


def test_a_client_without_a_certificate_is_refused(mesh: Mesh) -> None:
    cred = workload_credential(mesh, "team-a")
    assert cred.spiffe_id == "spiffe://cluster.local/ns/team-a/sa/app"
    frame = handshake(mesh.pilot.grpc, mesh.root, cred, mesh.tmp)
    assert frame[3] == 0x04, frame  # with the workload certificate: Pilot speaks HTTP/2
    # without one: Pilot ends the connection during the handshake (an alert, or closed) and never
    # speaks HTTP/2, let alone xDS
    try:
        answer = handshake(mesh.pilot.grpc, mesh.root, None, mesh.tmp)
    except (ssl.SSLError, ConnectionError) as exc:
        answer = repr(exc).encode()
    assert answer == b"" or b"CERTIFICATE_REQUIRED" in answer.upper() or b"reset" in answer, answer


def test_envoy_gets_its_namespace_config_and_not_another_namespaces(mesh: Mesh) -> None:
    agent_a = mesh.agent("agent-a", "team-a", "app")
    agent_b = mesh.agent("agent-b", "team-a", "app")  # namespace A's certificate ...
    procs: list[object] = [agent_a, agent_b]
    try:
        good = mesh.envoy("a", agent_a, "team-a")
        procs.append(good)
        wait_until(lambda: good.stat("cluster_manager.cds.update_success") > 0, 30, "Envoy A's clusters")
        assert good.stat("control_plane.connected_state") == 1
        assert good.stat("cluster.xds-grpc.ssl.handshake") > 0
        synced = httpx.get(mesh.pilot.url + "/debug/syncz", timeout=5).json()
        assert [row["proxy"] for row in synced] == ["a.team-a"]

        liar = mesh.envoy("b", agent_b, "team-b")  # ... claiming namespace B
        procs.append(liar)

        def refused() -> bool:
            metrics = httpx.get(mesh.pilot.url + "/metrics", timeout=5).text
            found = re.search(
                r'^pilot_xds_stream_resets_total\{reason="unauthenticated"\} (\S+)$', metrics, re.M
            )
            return found is not None and float(found.group(1)) >= 1

        wait_until(refused, 30, "Pilot to refuse the proxy claiming namespace team-b")
        log = mesh.pilot.log.read_text()
        assert "b.team-b" in log and "matches the proxy's team-b/app" in log, log[-2000:]
        assert liar.stat("cluster_manager.cds.update_success") == 0
        synced = httpx.get(mesh.pilot.url + "/debug/syncz", timeout=5).json()
        assert [row["proxy"] for row in synced] == ["a.team-a"]
    finally:
        stop_all(*reversed(procs))


@pytest.mark.parametrize(
    "pilot_san",
    ["spiffe://cluster.local/ns/elsewhere/sa/impostor", "spiffe://*/ns/elsewhere/sa/impostor"],
    ids=["exact", "any-trust-domain"],
)
def test_envoy_refuses_a_pilot_that_is_not_the_one_it_names(mesh: Mesh, pilot_san: str) -> None:
    agent = mesh.agent("agent-c", "team-a", "app")
    procs: list[object] = [agent]
    try:
        envoy = mesh.envoy("c", agent, "team-a", pilot_san=pilot_san)
        procs.append(envoy)
        wait_until(
            lambda: envoy.stat("cluster.xds-grpc.ssl.fail_verify_san") > 0, 30, "Envoy to refuse Pilot"
        )
        assert envoy.stat("cluster_manager.cds.update_success") == 0
    finally:
        stop_all(*reversed(procs))
