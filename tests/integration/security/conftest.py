"""One real mesh for the security tests: nats-server, Galley (config directory), Citadel, a node
agent per workload, Pilot, and two sidecar Envoys (client → server) on their own loopback IPs.

The process helpers are the pilot and galley integration tests' own (loaded from their files)
and Citadel's testing package; nothing is mocked. Config goes through Galley: each test writes
the Istio YAML it needs into Galley's directory and waits until the Envoys behave accordingly.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.natsserver import NatsServer

HERE = Path(__file__).resolve().parent
NS = "default"
HOST = f"server.{NS}.svc.cluster.local"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pilot_kit = _load("_security_pilot_kit", HERE.parent / "pilot" / "conftest.py")
galley_kit = _load("_security_galley_kit", HERE.parent / "galley" / "process.py")


class _Jwks(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        body = self.server.document.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class JwksServer(ThreadingHTTPServer):
    """A tiny local HTTP server publishing a JWKS document for ``jwksUri``."""

    daemon_threads = True

    def __init__(self, document: str) -> None:
        super().__init__(("127.0.0.1", 0), _Jwks)
        self.document = document
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/jwks.json"


@dataclass
class Mesh:
    client_ip: str
    server_ip: str
    port: int
    config_dir: Path
    app: Any
    pilot: Any

    def apply(self, *docs: dict[str, Any]) -> None:
        """Replace the security config with ``docs`` (Galley publishes the change)."""
        path = self.config_dir / "security.yaml"
        tmp = self.config_dir / ".security.yaml.tmp"
        tmp.write_text(yaml.safe_dump_all(list(docs)) if docs else "")
        tmp.replace(path)

    def via_client(self, path: str = "/", headers: dict[str, str] | None = None) -> httpx.Response:
        """A request from the client app through both sidecars."""
        return httpx.get(
            f"http://{self.client_ip}:{self.port}{path}",
            headers={"host": HOST, **(headers or {})},
            timeout=10,
        )

    def plaintext(self, path: str = "/") -> httpx.Response:
        """A request straight to the server's sidecar without TLS (a caller outside the mesh)."""
        return httpx.get(f"http://{self.server_ip}:{self.port}{path}", headers={"host": HOST}, timeout=10)

    def wait(self, check: Any, what: str, timeout: float = 60) -> Any:
        return pilot_kit.wait_until(check, timeout, what, interval=0.2)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("security")
    config_dir = tmp / "config"
    config_dir.mkdir()
    (config_dir / "security.yaml").write_text("")
    base = pilot_kit.loopback_base()
    client_ip, server_ip = base + "1", base + "2"
    port = pilot_kit.free_port_on(["127.0.0.1", client_ip, server_ip])
    with ExitStack() as stack:
        nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
        nats.start()
        stack.callback(nats.stop)
        galley = stack.enter_context(galley_kit.run_galley(nats.url, config_dir, tmp / "galley.log"))
        pilot_kit.wait_until(
            lambda: httpx.get(galley.monitoring + "/readyz", timeout=2).status_code == 200, 60, "galley ready"
        )
        citadel = CitadelProcess(tmp / "ca", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        stack.callback(citadel.stop)
        app = pilot_kit.App("server", "v1", "127.0.0.1", port)
        stack.callback(app.stop)
        bus = pilot_kit.BusWriter(nats.url)
        svc_port = registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)
        server_labels = {"app": "server", "security.istio.io/tlsMode": "istio"}
        bus.put_registry(
            [
                registry_pb2.Service(
                    hostname=HOST, namespace=NS, ports=[svc_port], resolution=registry_pb2.STATIC
                )
            ],
            [
                registry_pb2.WorkloadInstance(
                    name="server-0",
                    namespace=NS,
                    address=server_ip,
                    labels=server_labels,
                    service_account="server",
                    services=[HOST],
                    health=registry_pb2.HEALTHY,
                    ports={"http": port},
                )
            ],
        )
        pilot = pilot_kit.start_pilot(nats.url, tmp, "pilot-security")
        stack.callback(pilot.stop)
        envoys = []
        for name, ip, labels in (
            ("client", client_ip, {"app": "client"}),
            ("server", server_ip, server_labels),
        ):
            token = make_token(tmp / "ca", NS, name, "istio-ca", 3600)
            agent = NodeAgentProcess(
                tmp / f"agent-{name}", citadel.target, tmp / "ca" / "root-cert.pem", token
            )
            agent.start()
            stack.callback(agent.stop)
            opts = pilot_kit.proxy_options(
                "sidecar", ip, f"{name}-0", NS, labels, [f"127.0.0.1:{pilot.grpc}"], delta=False
            )
            opts.sds_socket = str(agent.socket)
            opts.service_account = name
            envoy = pilot_kit.start_envoy(tmp, name, opts)
            stack.callback(envoy.stop)
            envoys.append(envoy)
        m = Mesh(client_ip, server_ip, port, config_dir, app, pilot)
        try:
            m.wait(lambda: m.via_client().status_code == 200, "client → server through both sidecars", 90)
        except AssertionError:
            for e in envoys:
                print(e.log.read_text()[-3000:] if e.log.exists() else "")
            print(pilot.log.read_text()[-3000:])
            raise
        yield m


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer(json.dumps({"keys": []}))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def kit() -> Any:
    """The pilot integration tests' process helpers (test files cannot import a conftest)."""
    return pilot_kit.Kit
