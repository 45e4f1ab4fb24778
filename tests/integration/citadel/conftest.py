"""A small real mesh for CA/SDS tests: citadel, two node agents, two Envoys (client/server), an app.

The Envoys use static bootstraps whose TLS contexts take ``default`` / ``ROOTCA`` from their
node agent's SDS socket, so everything about certificates is real and nothing about routing is
Pilot's (that comes from another part of the project).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshplane.citadel.testing import (
    CitadelProcess,
    EnvoyProcess,
    NodeAgentProcess,
    ServiceProcess,
    client_bootstrap,
    server_bootstrap,
    with_sds_token,
    with_sds_token_file,
)
from meshplane.ctl.token import make_token
from meshplane.shared.natsserver import NatsServer

SERVER_ID = "spiffe://cluster.local/ns/default/sa/server"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"


class _EchoXfcc(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = (self.headers.get("x-forwarded-client-cert") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Mesh:
    citadel: CitadelProcess
    client_agent: NodeAgentProcess
    server_agent: NodeAgentProcess
    client_envoy: EnvoyProcess
    server_envoy: EnvoyProcess
    url: str
    processes: list[ServiceProcess] = field(default_factory=list)


@pytest.fixture
def app_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoXfcc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_mesh(tmp_path: Path, app_port: int) -> Iterator[Callable[..., Mesh]]:
    started: list[ServiceProcess | NatsServer | EnvoyProcess] = []

    def make(
        cert_ttl: str = "24h",
        citadel_env: dict[str, str] | None = None,
        nats: bool = False,
        per_node: bool = False,
    ) -> Mesh:
        bus_args: list[str] = []
        if nats:
            server = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
            server.start()
            started.append(server)
            bus_args = ["--nats-url", server.url]
        env = {"CITADEL_CA_KEY_TYPE": "ec", **(citadel_env or {})}
        citadel = CitadelProcess(tmp_path / "ca", tmp_path / "citadel.log", args=bus_args, env=env)
        citadel.start()
        started.append(citadel)
        root = tmp_path / "ca" / "root-cert.pem"
        tokens = {
            sa: make_token(tmp_path / "ca", "default", sa, "istio-ca", 3600) for sa in ("client", "server")
        }
        agents = []
        # one agent per workload (local mode), or one for both (per node: tokens on the SDS streams)
        for sa in ("client",) if per_node else ("client", "server"):
            agent = NodeAgentProcess(
                tmp_path / sa,
                citadel.target,
                root,
                None if per_node else tokens[sa],
                args=["--cert-ttl", cert_ttl, *bus_args],
            )
            agent.start()
            started.append(agent)
            agents.append(agent)
        c_admin, c_listen, s_admin, s_listen = EnvoyProcess.ports(4)
        server_config = server_bootstrap(s_admin, s_listen, app_port, agents[-1].socket, "cluster.local")
        client_config = client_bootstrap(c_admin, c_listen, s_listen, agents[0].socket, SERVER_ID)
        if per_node:  # the client's token inline, the server's from a file Envoy re-reads
            with_sds_token(client_config, tokens["client"])
            (tmp_path / "server-token").write_text(tokens["server"])
            with_sds_token_file(server_config, tmp_path / "server-token", agents[-1].socket)
        server_envoy = EnvoyProcess(tmp_path / "server-envoy", server_config, s_admin)
        client_envoy = EnvoyProcess(tmp_path / "client-envoy", client_config, c_admin)
        for envoy in (server_envoy, client_envoy):
            envoy.start()
            started.append(envoy)
        for envoy in (server_envoy, client_envoy):
            envoy.wait_ready()
        return Mesh(
            citadel, agents[0], agents[-1], client_envoy, server_envoy, f"http://127.0.0.1:{c_listen}/"
        )

    try:
        yield make
    finally:
        for proc in reversed(started):
            proc.stop()
