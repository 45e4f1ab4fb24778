"""Gateway TLS through a real Envoy: SIMPLE with ``credentialName`` served over SDS, and
``httpsRedirect`` on the plain-text server.

The certificate comes from a small SDS server on a Unix socket (the node agent's role); the
gateway's bootstrap points ``sds-grpc`` at it, as ``meshctl bootstrap --sds-socket`` writes.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.testing.certs import write_self_signed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = "shop.example.com"


class Sds(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """Serves one TLS certificate secret by name; ACKs end the exchange."""

    def __init__(self, name: str, cert: bytes, key: bytes) -> None:
        self.name, self.cert, self.key = name, cert, key
        self.asked: list[str] = []

    def StreamSecrets(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:  # noqa: N802
        for req in requests:
            if req.response_nonce:
                continue
            self.asked.extend(req.resource_names)
            secret = secret_pb2.Secret(name=self.name)
            secret.tls_certificate.certificate_chain.inline_bytes = self.cert
            secret.tls_certificate.private_key.inline_bytes = self.key
            resp = discovery_pb2.DiscoveryResponse(version_info="1", nonce="1", type_url=req.type_url)
            if self.name in req.resource_names:
                resp.resources.add().Pack(secret)
            yield resp


def https_get(address: str, port: int, cafile: Path, sni: str, path: str = "/") -> str:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := tls.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_gateway_simple_tls_over_sds_and_https_redirect(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    gw_ip, app_ip = base + "60", base + "20"
    port, tls_port, http_port = (kit.free_port_on([gw_ip, app_ip]) for _ in range(3))
    cafile, key_path = write_self_signed(tmp_path, HOST, dns_names=(HOST,))
    cert, key = cafile.read_bytes(), key_path.read_bytes()
    sds = Sds(f"kubernetes://{HOST}-cert", cert, key)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(sds, server)
    sock = tmp_path / "sds.sock"
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    app = kit.App("web", "v1", app_ip, port)
    bus = kit.BusWriter(nats_module.url)
    svc_port = registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)
    web = f"web.{NS}.svc.cluster.local"
    bus.put_registry(
        [registry_pb2.Service(hostname=web, namespace=NS, ports=[svc_port])],
        [
            registry_pb2.WorkloadInstance(
                name="web-1",
                namespace=NS,
                address=app_ip,
                services=[web],
                labels={"app": "web"},
                ports={"http": port},
            )
        ],
    )
    bus.put_configs(
        kit.vs_config(
            "Gateway",
            NS,
            "shop",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": tls_port, "name": "https", "protocol": "HTTPS"},
                        "bind": gw_ip,
                        "hosts": [HOST],
                        "tls": {"mode": "SIMPLE", "credentialName": f"{HOST}-cert"},
                    },
                    {
                        "port": {"number": http_port, "name": "http", "protocol": "HTTP"},
                        "bind": gw_ip,
                        "hosts": [HOST],
                        "tls": {"httpsRedirect": True},
                    },
                ],
            },
        ),
        kit.vs_config(
            "VirtualService",
            NS,
            "shop",
            {"hosts": [HOST], "gateways": ["shop"], "http": [{"route": [{"destination": {"host": "web"}}]}]},
        ),
    )
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot-tls")
    opts = kit.proxy_options(
        "router",
        gw_ip,
        "ingress",
        "istio-system",
        {"istio": "ingressgateway"},
        [f"127.0.0.1:{pilot.grpc}"],
        False,
    )
    opts.sds_socket = str(sock)
    envoy = kit.start_envoy(tmp_path, "gateway-tls", opts)
    try:
        answer = kit.wait_until(
            lambda: https_get(gw_ip, tls_port, cafile, HOST), 30, "HTTPS through the gateway"
        )
        assert answer.startswith("HTTP/1.1 200")
        assert '"name": "web"' in answer
        assert f"kubernetes://{HOST}-cert" in sds.asked
        plain = kit.wait_until(
            lambda: httpx.get(f"http://{gw_ip}:{http_port}/x", headers={"host": HOST}, timeout=5),
            10,
            "redirect server",
        )
        assert plain.status_code == 301
        assert plain.headers["location"].startswith(f"https://{HOST}")
    finally:
        envoy.stop()
        pilot.stop()
        app.stop()
        server.stop(0)
