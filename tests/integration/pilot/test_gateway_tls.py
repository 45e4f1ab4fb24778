"""Gateway TLS and L4 through a real Envoy: SIMPLE and MUTUAL with ``credentialName`` over SDS,
``httpsRedirect``, PASSTHROUGH routed by SNI, a weighted TCP route, and CORS preflights.

Certificates come from a small SDS server on a Unix socket (the node agent's role); the
gateway's bootstrap points ``sds-grpc`` at it, as ``meshctl bootstrap --sds-socket`` writes.
One gateway Envoy serves every test; the module runs once with SotW and once with Delta xDS.
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.testing.certs import write_self_signed, write_signed
from meshplane.shared.testing.sockets import tcp_exchange, tls_exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.xdist_group("gateway-tls")]

NS = "shop"
HOST = "shop.example.com"
MTLS_HOST = "mtls.example.com"
PASS_HOST = "pass.example.com"
TCP_HOST = "tcp.example.com"
SECOND_HOST = "second.example.com"
FILES_HOST = "files.example.com"
CORS_HOST = "cors.example.com"


class Sds(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """Serves TLS certificates and CA bundles by secret name; ACKs end the exchange."""

    def __init__(self) -> None:
        self.secrets: dict[str, secret_pb2.Secret] = {}
        self.asked: list[str] = []

    def add_certificate(self, name: str, cert: bytes, key: bytes) -> None:
        secret = secret_pb2.Secret(name=name)
        secret.tls_certificate.certificate_chain.inline_bytes = cert
        secret.tls_certificate.private_key.inline_bytes = key
        self.secrets[name] = secret

    def add_ca(self, name: str, ca: bytes) -> None:
        secret = secret_pb2.Secret(name=name)
        secret.validation_context.trusted_ca.inline_bytes = ca
        self.secrets[name] = secret

    def StreamSecrets(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:  # noqa: N802
        for req in requests:
            if req.response_nonce:
                continue
            self.asked.extend(req.resource_names)
            resp = discovery_pb2.DiscoveryResponse(version_info="1", nonce="1", type_url=req.type_url)
            for name in req.resource_names:
                if name in self.secrets:
                    resp.resources.add().Pack(self.secrets[name])
            yield resp


def https_get(
    address: str, port: int, cafile: Path, sni: str, client_cert: tuple[Path, Path] | None = None
) -> str:
    request = f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode()
    _, answer = tls_exchange(address, port, sni, cafile, request, client_cert)
    return answer.decode(errors="replace")


def refused(fn: Any) -> str:
    """Run a TLS exchange expected to fail; return how it failed ('' = closed with nothing read)."""
    try:
        result = fn()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return f"error: {exc}"
    return str(result)


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


@dataclass
class Gateway:
    kit: Any
    ip: str
    ports: dict[str, int]
    certs: dict[str, tuple[Path, Path]]
    sds: Sds
    envoy: Any
    apps: dict[str, Any]

    def tls_until(
        self, port: str, sni: str, cafile: Path, payload: bytes, verify_name: bool = True
    ) -> tuple[bytes, bytes]:
        """``tls_exchange`` with the server on ``port``, retried until the gateway has that listener."""
        found: tuple[bytes, bytes] = self.kit.wait_until(
            lambda: tls_exchange(self.ip, self.ports[port], sni, cafile, payload, verify_name=verify_name),
            30,
            f"TLS to the {port} server",
        )
        return found

    def listener_stat(self, port: str, name: str) -> int:
        value: int = self.envoy.stat(f"listener.{self.ip}_{self.ports[port]}.{name}")
        return value


def _registry(addr: dict[str, str], ports: dict[str, int]) -> tuple[list[Any], list[Any]]:
    kinds = {
        "web": ("http", registry_pb2.HTTP),
        "secure": ("tls", registry_pb2.TLS),
        "tcp-a": ("tcp", registry_pb2.TCP),
        "tcp-b": ("tcp", registry_pb2.TCP),
    }
    services, workloads = [], []
    for name, (port_name, protocol) in kinds.items():
        host = f"{name}.{NS}.svc.cluster.local"
        number = ports[name]
        svc_port = registry_pb2.ServicePort(name=port_name, number=number, protocol=protocol)
        services.append(registry_pb2.Service(hostname=host, namespace=NS, ports=[svc_port]))
        workloads.append(
            registry_pb2.WorkloadInstance(
                name=f"{name}-1",
                namespace=NS,
                address=addr[name],
                services=[host],
                labels={"app": name},
                ports={port_name: number},
            )
        )
    # what an east-west gateway fronts: the same server as a workload with a sidecar (it accepts
    # Istio mTLS); Istio's SNI-DNAT clusters carry only such endpoints
    host = f"mesh-secure.{NS}.svc.cluster.local"
    svc_port = registry_pb2.ServicePort(name="tls", number=ports["secure"], protocol=registry_pb2.TLS)
    services.append(registry_pb2.Service(hostname=host, namespace=NS, ports=[svc_port]))
    workloads.append(
        registry_pb2.WorkloadInstance(
            name="mesh-secure-1",
            namespace=NS,
            address=addr["secure"],
            services=[host],
            labels={"app": "mesh-secure", "security.istio.io/tlsMode": "istio"},
            ports={"tls": ports["secure"]},
        )
    )
    return services, workloads


def _configs(kit: Any, ip: str, ports: dict[str, int], files: dict[str, str]) -> list[Any]:
    def server(
        port: str, protocol: str, hosts: list[str], tls: dict[str, Any] | None = None, name: str = ""
    ) -> Any:
        out = {
            "port": {"number": ports[port], "name": name or port, "protocol": protocol},
            "bind": ip,
            "hosts": hosts,
        }
        return {**out, "tls": tls} if tls else out

    gateway = {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            server("https", "HTTPS", [HOST], {"mode": "SIMPLE", "credentialName": f"{HOST}-cert"}),
            server(  # a second server on the same port: its own credential, picked by SNI
                "https",
                "HTTPS",
                [SECOND_HOST],
                {"mode": "SIMPLE", "credentialName": "second-cert", "minProtocolVersion": "TLSV1_3"},
                name="https-second",
            ),
            server("http", "HTTP", [HOST], {"httpsRedirect": True}),
            server("http", "HTTP", [CORS_HOST], name="http-cors"),
            server(
                "mtls",
                "HTTPS",
                [MTLS_HOST],
                {"mode": "MUTUAL", "credentialName": "mtls-cred", "subjectAltNames": ["client.example.com"]},
            ),
            server("files", "HTTPS", [FILES_HOST], {"mode": "MUTUAL", **files}),
            server("tls-tcp", "TLS", [TCP_HOST], {"mode": "SIMPLE", "credentialName": f"{HOST}-cert"}),
            server("pass", "TLS", [PASS_HOST], {"mode": "PASSTHROUGH"}),
            server("auto", "TLS", [f"*.{NS}.svc.cluster.local"], {"mode": "AUTO_PASSTHROUGH"}),
            server("tcp", "TCP", ["*"]),
        ],
    }

    def to(name: str) -> dict[str, Any]:
        return {"destination": {"host": name, "port": {"number": ports[name]}}}

    web = {"destination": {"host": "web"}}
    cors = {
        "allowOrigins": [
            {"exact": "https://app.example.com"},
            {"prefix": "https://dev-"},
            {"regex": r"https://[a-z]+\.partner\.org"},
        ],
        "allowMethods": ["GET", "PUT"],
        "allowHeaders": ["x-custom", "authorization"],
        "maxAge": "24h",
        "exposeHeaders": ["x-served-by"],
        "allowCredentials": True,
    }
    c = kit.vs_config
    return [
        # No CA in this mesh: without this, auto mTLS makes Envoy wait 15 s for SDS secrets.
        c(
            "DestinationRule",
            NS,
            "plaintext",
            {"host": f"*.{NS}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        ),
        c("Gateway", NS, "shop", gateway),
        c(
            "VirtualService",
            NS,
            "shop",
            {
                "hosts": [HOST, MTLS_HOST, SECOND_HOST, FILES_HOST],
                "gateways": ["shop"],
                "http": [{"route": [web]}],
            },
        ),
        c(
            "VirtualService",
            NS,
            "cors",
            {
                "hosts": [CORS_HOST],
                "gateways": ["shop"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": "/strict"}}],
                        "corsPolicy": {**cors, "unmatchedPreflights": "IGNORE"},
                        "route": [web],
                    },
                    {"corsPolicy": cors, "route": [web]},
                ],
            },
        ),
        c(
            "VirtualService",
            NS,
            "passthrough",
            {
                "hosts": [PASS_HOST],
                "gateways": ["shop"],
                "tls": [
                    {
                        "match": [{"port": ports["pass"], "sniHosts": [PASS_HOST]}],
                        "route": [{"destination": {"host": "secure", "port": {"number": ports["secure"]}}}],
                    }
                ],
            },
        ),
        c(
            "VirtualService",
            NS,
            "tls-terminated",
            {"hosts": [TCP_HOST], "gateways": ["shop"], "tcp": [{"route": [to("tcp-a")]}]},
        ),
        c(
            "VirtualService",
            NS,
            "tcp",
            {
                "hosts": ["*"],
                "gateways": ["shop"],
                "tcp": [
                    {
                        "match": [{"port": ports["tcp"]}],
                        "route": [
                            {
                                "destination": {"host": f"tcp-{x}", "port": {"number": ports[f"tcp-{x}"]}},
                                "weight": 50,
                            }
                            for x in ("a", "b")
                        ],
                    }
                ],
            },
        ),
    ]


@pytest.fixture(scope="module", params=["sotw", "delta"])
def gateway(
    request: pytest.FixtureRequest, kit: Any, nats_module: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp(f"gateway-tls-{request.param}")
    base = kit.loopback_base()
    addr = {
        "gw": base + "60",
        "web": base + "20",
        "secure": base + "30",
        "tcp-a": base + "41",
        "tcp-b": base + "42",
    }
    names = (
        "web",
        "secure",
        "tcp-a",
        "tcp-b",
        "https",
        "http",
        "mtls",
        "pass",
        "tcp",
        "tls-tcp",
        "auto",
        "files",
    )
    ports = {n: kit.free_port_on(list(addr.values())) for n in names}
    certs = {
        "server": write_self_signed(tmp / "server", HOST, dns_names=(HOST, MTLS_HOST, TCP_HOST, FILES_HOST)),
        "second": write_self_signed(tmp / "second", SECOND_HOST, dns_names=(SECOND_HOST,)),
        "upstream": write_self_signed(tmp / "upstream", PASS_HOST, dns_names=(PASS_HOST,)),
        "client-ca": write_self_signed(tmp / "client-ca", "client-ca"),
        "other-ca": write_self_signed(tmp / "other-ca", "other-ca"),
    }
    certs["client"] = write_signed(tmp / "client", certs["client-ca"], "client", ("client.example.com",))
    certs["other-client"] = write_signed(
        tmp / "other-client", certs["client-ca"], "other", ("other.example.com",)
    )
    certs["stranger"] = write_signed(tmp / "stranger", certs["other-ca"], "stranger")
    cert, key = (p.read_bytes() for p in certs["server"])
    sds = Sds()
    sds.add_certificate(f"kubernetes://{HOST}-cert", cert, key)
    sds.add_certificate("kubernetes://mtls-cred", cert, key)
    sds.add_certificate("kubernetes://second-cert", *(p.read_bytes() for p in certs["second"]))
    sds.add_ca("kubernetes://mtls-cred-cacert", certs["client-ca"][0].read_bytes())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(sds, server)
    sock = tmp / "sds.sock"
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    apps: dict[str, Any] = {}
    pilot = envoy = None
    try:
        apps["web"] = kit.App("web", "v1", addr["web"], ports["web"])
        apps["secure"] = kit.L4App("secure", addr["secure"], ports["secure"], *certs["upstream"])
        for x in ("tcp-a", "tcp-b"):
            apps[x] = kit.L4App(x, addr[x], ports[x])
        files = {  # mounted in the gateway, served by the node agent as file-cert:/file-root:
            "serverCertificate": str(certs["server"][0]),
            "privateKey": str(certs["server"][1]),
            "caCertificates": str(certs["client-ca"][0]),
        }
        sds.add_certificate(f"file-cert:{files['serverCertificate']}~{files['privateKey']}", cert, key)
        sds.add_ca(f"file-root:{files['caCertificates']}", certs["client-ca"][0].read_bytes())
        kit.publish(nats_module.url, _registry(addr, ports), _configs(kit, addr["gw"], ports, files))
        pilot = kit.start_pilot(nats_module.url, tmp, f"pilot-gwtls-{request.param}")
        opts = kit.proxy_options(
            "router",
            addr["gw"],
            "ingress",
            "istio-system",
            {"istio": "ingressgateway"},
            [f"127.0.0.1:{pilot.grpc}"],
            request.param == "delta",
        )
        opts.sds_socket = str(sock)
        envoy = kit.start_envoy(tmp, f"gateway-tls-{request.param}", opts)
        gw = Gateway(kit, addr["gw"], ports, certs, sds, envoy, apps)
        kit.wait_until(
            lambda: https_get(gw.ip, ports["https"], certs["server"][0], HOST),
            30,
            "HTTPS through the gateway",
        )
        yield gw
    finally:
        kit.stop_all(envoy, pilot, *apps.values())
        server.stop(0)


def test_simple_tls_over_sds_and_https_redirect(gateway: Gateway) -> None:
    answer = https_get(gateway.ip, gateway.ports["https"], gateway.certs["server"][0], HOST)
    assert answer.startswith("HTTP/1.1 200")
    assert '"name": "web"' in answer
    assert f"kubernetes://{HOST}-cert" in gateway.sds.asked
    plain = httpx.get(f"http://{gateway.ip}:{gateway.ports['http']}/x", headers={"host": HOST}, timeout=5)
    assert plain.status_code == 301
    assert plain.headers["location"].startswith(f"https://{HOST}")


def test_simple_tls_servers_sharing_a_port_pick_their_credential_by_sni(gateway: Gateway) -> None:
    second = gateway.certs["second"][0]
    request = f"GET / HTTP/1.1\r\nHost: {SECOND_HOST}\r\nConnection: close\r\n\r\n".encode()
    peer, answer = gateway.tls_until("https", SECOND_HOST, second, request)
    assert peer == der(second)
    assert answer.startswith(b"HTTP/1.1 200") and b'"name": "web"' in answer
    peer, _ = tls_exchange(gateway.ip, gateway.ports["https"], HOST, gateway.certs["server"][0], request)
    assert peer == der(gateway.certs["server"][0])
    # minProtocolVersion TLSV1_3 on the second server only: a TLS 1.2 client is refused there, not here
    tls12 = refused(
        lambda: tls_exchange(gateway.ip, gateway.ports["https"], SECOND_HOST, second, request, tls12=True)
    )
    assert "HTTP/" not in tls12 and "error" in tls12, tls12
    peer, _ = tls_exchange(
        gateway.ip, gateway.ports["https"], HOST, gateway.certs["server"][0], request, tls12=True
    )
    assert peer == der(gateway.certs["server"][0])


def test_mutual_tls_needs_a_client_cert_from_the_credential_ca(gateway: Gateway) -> None:
    ip, port, ca = gateway.ip, gateway.ports["mtls"], gateway.certs["server"][0]
    answer = gateway.kit.wait_until(
        lambda: https_get(ip, port, ca, MTLS_HOST, gateway.certs["client"]),
        30,
        "mutual TLS with a client cert",
    )
    assert answer.startswith("HTTP/1.1 200")
    assert '"name": "web"' in answer
    assert "kubernetes://mtls-cred-cacert" in gateway.sds.asked

    no_cert = refused(lambda: https_get(ip, port, ca, MTLS_HOST))
    assert "HTTP/" not in no_cert, no_cert
    assert gateway.listener_stat("mtls", "ssl.fail_verify_no_cert") >= 1

    stranger = refused(lambda: https_get(ip, port, ca, MTLS_HOST, gateway.certs["stranger"]))
    assert "HTTP/" not in stranger, stranger
    assert gateway.listener_stat("mtls", "ssl.fail_verify_error") >= 1

    wrong_name = refused(lambda: https_get(ip, port, ca, MTLS_HOST, gateway.certs["other-client"]))
    assert "HTTP/" not in wrong_name, wrong_name  # right CA, but not a subjectAltName the server lists
    assert gateway.listener_stat("mtls", "ssl.fail_verify_san") >= 1


def test_mutual_tls_from_mounted_files(gateway: Gateway) -> None:
    ip, port, ca = gateway.ip, gateway.ports["files"], gateway.certs["server"][0]
    answer = gateway.kit.wait_until(
        lambda: https_get(ip, port, ca, FILES_HOST, gateway.certs["client"]), 30, "mutual TLS from files"
    )
    assert answer.startswith("HTTP/1.1 200")
    no_cert = refused(lambda: https_get(ip, port, ca, FILES_HOST))
    assert "HTTP/" not in no_cert, no_cert
    stranger = refused(lambda: https_get(ip, port, ca, FILES_HOST, gateway.certs["stranger"]))
    assert "HTTP/" not in stranger, stranger


def test_tls_terminated_at_the_gateway_then_tcp_to_the_upstream(gateway: Gateway) -> None:
    ca = gateway.certs["server"][0]
    peer, answer = gateway.tls_until("tls-tcp", TCP_HOST, ca, b"plain upstream")
    assert peer == der(ca)  # the gateway's credential
    assert answer == b"tcp-a:plain upstream"  # the upstream got the decrypted bytes


def test_gateway_envoy_accepted_every_resource(gateway: Gateway) -> None:
    for kind in ("listener_manager.lds", "cluster_manager.cds"):
        assert gateway.envoy.stat(f"{kind}.update_rejected") == 0, gateway.envoy.log.read_text()[-3000:]
        assert gateway.envoy.stat(f"{kind}.update_success") >= 1


def test_passthrough_reaches_the_upstream_tls_server_by_sni(gateway: Gateway) -> None:
    upstream_cert = gateway.certs["upstream"][0]
    peer, answer = gateway.tls_until("pass", PASS_HOST, upstream_cert, b"hello")
    assert peer == der(upstream_cert)  # the upstream's certificate, not the gateway's
    assert peer != der(gateway.certs["server"][0])
    assert answer == b"secure:hello"

    before = len(gateway.apps["secure"].seen)
    unknown = refused(
        lambda: tls_exchange(gateway.ip, gateway.ports["pass"], "other.example.com", upstream_cert, b"hi")
    )
    assert "secure:" not in unknown, unknown
    assert len(gateway.apps["secure"].seen) == before
    assert gateway.listener_stat("pass", "no_filter_chain_match") >= 1


def test_tcp_route_weighted_between_two_upstreams(gateway: Gateway) -> None:
    ip, port = gateway.ip, gateway.ports["tcp"]
    gateway.kit.wait_until(lambda: tcp_exchange(ip, port, b"ping"), 30, "TCP through the gateway")
    answers = [tcp_exchange(ip, port, f"n{i}".encode()) for i in range(40)]
    assert all(a.split(b":", 1)[1] == f"n{i}".encode() for i, a in enumerate(answers)), answers
    counts = collections.Counter(a.split(b":", 1)[0] for a in answers)
    assert set(counts) == {b"tcp-a", b"tcp-b"}, counts  # 50/50: one missing has odds 2**-39


def preflight(gateway: Gateway, origin: str, path: str = "/api") -> httpx.Response:
    return httpx.options(
        f"http://{gateway.ip}:{gateway.ports['http']}{path}",
        headers={
            "host": CORS_HOST,
            "origin": origin,
            "access-control-request-method": "PUT",
            "access-control-request-headers": "x-custom",
        },
        timeout=5,
    )


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "https://dev-42.example.com", "https://shop.partner.org"]
)
def test_cors_preflight_allows_listed_origins(gateway: Gateway, origin: str) -> None:
    before = len(gateway.apps["web"].requests)
    resp = preflight(gateway, origin)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == origin
    assert set(resp.headers["access-control-allow-methods"].split(",")) == {"GET", "PUT"}
    assert resp.headers["access-control-allow-headers"] == "x-custom,authorization"
    assert resp.headers["access-control-max-age"] == "86400"
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert len(gateway.apps["web"].requests) == before  # Envoy answered the preflight itself


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "https://app.example.com.evil.org", "http://x.partner.org"]
)
def test_cors_preflight_ignores_other_origins(gateway: Gateway, origin: str) -> None:
    resp = preflight(gateway, origin)
    assert "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-methods" not in resp.headers


def test_cors_unmatched_preflights_forwarded_unless_ignored(gateway: Gateway) -> None:
    web = gateway.apps["web"]
    before = len(web.requests)
    preflight(gateway, "https://evil.example.com")  # FORWARD, the default: the app answers it
    assert len(web.requests) == before + 1 and web.requests[-1]["path"] == "/api"
    resp = preflight(gateway, "https://evil.example.com", "/strict")  # IGNORE: Envoy answers it
    assert "access-control-allow-origin" not in resp.headers
    assert len(web.requests) == before + 1


def test_cors_actual_request_from_an_allowed_origin(gateway: Gateway) -> None:
    url = f"http://{gateway.ip}:{gateway.ports['http']}/data"
    resp = httpx.get(url, headers={"host": CORS_HOST, "origin": "https://app.example.com"}, timeout=5)
    assert resp.status_code == 200 and resp.json()["name"] == "web"
    assert resp.headers["access-control-allow-origin"] == "https://app.example.com"
    assert resp.headers["access-control-expose-headers"] == "x-served-by"
    other = httpx.get(url, headers={"host": CORS_HOST, "origin": "https://evil.example.com"}, timeout=5)
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


def test_auto_passthrough_routes_by_the_cluster_named_in_sni(gateway: Gateway) -> None:
    upstream_cert = gateway.certs["upstream"][0]
    sni = f"outbound_.{gateway.ports['secure']}_._.mesh-secure.{NS}.svc.cluster.local"
    # Another network's sidecar sends Istio's SNI and checks identities, not that name: no name check.
    peer, answer = gateway.tls_until("auto", sni, upstream_cert, b"east-west", verify_name=False)
    assert peer == der(upstream_cert)
    assert answer == b"secure:east-west"
    before = len(gateway.apps["secure"].seen)
    # the server without a sidecar (no tlsMode label) is not reachable through AUTO_PASSTHROUGH
    plain_sni = f"outbound_.{gateway.ports['secure']}_._.secure.{NS}.svc.cluster.local"
    no_sidecar = refused(
        lambda: tls_exchange(
            gateway.ip, gateway.ports["auto"], plain_sni, upstream_cert, b"hi", verify_name=False
        )
    )
    assert "secure:" not in no_sidecar, no_sidecar
    unknown = refused(
        lambda: tls_exchange(
            gateway.ip,
            gateway.ports["auto"],
            f"outbound_.1_._.nothing.{NS}.svc.cluster.local",
            upstream_cert,
            b"hi",
            verify_name=False,
        )
    )
    assert "secure:" not in unknown, unknown
    assert len(gateway.apps["secure"].seen) == before
