"""What Istio users write that Envoy must never reject, through real processes: DestinationRule
SIMPLE/MUTUAL TLS to servers the test runs, a CIDR ServiceEntry, a ServiceEntry endpoint on a
Unix socket, and a gateway server with file-mounted certificates.

Certificates named by files reach Envoy as the SDS resources ``file-root:<path>`` /
``file-cert:<cert>~<key>``, served by a real node agent (with a real Citadel behind it) that reads
the files. A missing file leaves the cluster or listener waiting; it is served once it appears.

The client sidecar has no iptables and the address 0.0.0.0, so its outbound listeners bind the
wildcard address on each service port: a connection to any loopback address on that port
reaches it, as a captured connection would. The module runs once with SotW and once with Delta xDS.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.certs import write_self_signed, write_signed
from meshplane.shared.testing.sockets import tcp_exchange, tls_exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.xdist_group("upstream-tls")]

NS = "shop"
GOOD = "good.example.com"
GW_HOST = "files.example.com"

#: service → upstream app it reaches
UPSTREAMS = {
    "good": "good",
    "wrong-ca": "stranger",
    "wrong-san": "good",
    "mutual": "mutual",
    "no-client-cert": "mutual",
    "system": "good",
    "late": "good",
    "gw-echo": "echo",
    "web": "https",
    "web-other": "https",
}


def fq(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


class _UdsEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(4096)
        self.request.sendall(b"uds:" + data)


class UdsEcho(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), _UdsEcho)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = f"hello {self.headers.get('host', '')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class HttpsApp(ThreadingHTTPServer):
    """An HTTPS server answering ``hello <Host>``."""

    daemon_threads = True

    def __init__(self, host: str, port: int, cert: Path, key: Path) -> None:
        super().__init__((host, port), _Hello)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert), str(key))
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class Mesh:
    kit: Any
    ports: dict[str, int]
    certs: dict[str, tuple[Path, Path]]
    apps: dict[str, Any]
    envoy: Any
    gateway: Any
    pilot: Any
    bus: Any
    tmp: Path
    cidr_base: str
    gw_ip: str

    def send(self, service: str, payload: bytes = b"hello", address: str = "127.0.0.1") -> bytes:
        try:
            return tcp_exchange(address, self.ports[service], payload)
        except OSError as exc:
            return f"refused: {exc}".encode()

    def pilot_rejects(self) -> float:
        text = httpx.get(self.pilot.url + "/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("pilot_total_xds_rejects") and "_created" not in line
        )

    def assert_no_rejects(self) -> None:
        for envoy in (self.envoy, self.gateway):
            for kind in ("listener_manager.lds", "cluster_manager.cds"):
                assert envoy.stat(f"{kind}.update_rejected") == 0, envoy.log.read_text()[-3000:]
        assert self.pilot_rejects() == 0


def _registry(addr: dict[str, str], ports: dict[str, int]) -> tuple[list[Any], list[Any]]:
    services, workloads = [], []
    for name, upstream in UPSTREAMS.items():
        http = name.startswith("web")
        protocol = registry_pb2.HTTP if http else registry_pb2.TCP
        port = registry_pb2.ServicePort(name="http" if http else "tcp", number=ports[name], protocol=protocol)
        services.append(registry_pb2.Service(hostname=fq(name), namespace=NS, ports=[port]))
        workloads.append(
            registry_pb2.WorkloadInstance(
                name=f"{name}-1",
                namespace=NS,
                address=addr[upstream],
                services=[fq(name)],
                labels={"app": name},
                ports={port.name: ports[f"app-{upstream}"]},
                health=registry_pb2.HEALTHY,
            )
        )
    return services, workloads


def _tls_rules(kit: Any, certs: dict[str, tuple[Path, Path]]) -> list[Any]:
    ca = str(certs["ca"][0])
    client = {"clientCertificate": str(certs["client"][0]), "privateKey": str(certs["client"][1])}
    rules: dict[str, dict[str, Any]] = {
        "good": {"mode": "SIMPLE", "caCertificates": ca, "sni": GOOD, "subjectAltNames": [GOOD]},
        "wrong-ca": {"mode": "SIMPLE", "caCertificates": ca, "sni": GOOD},
        "wrong-san": {"mode": "SIMPLE", "caCertificates": ca, "subjectAltNames": ["other.example.com"]},
        "mutual": {"mode": "MUTUAL", "caCertificates": ca, **client},
        "no-client-cert": {"mode": "SIMPLE", "caCertificates": ca},
        # no CA: Envoy must verify with the system roots, and must not reject the SAN check
        "system": {"mode": "SIMPLE", "sni": GOOD, "subjectAltNames": [GOOD]},
        # HTTP without sni/subjectAltNames: SNI from the Host header, and the certificate must match it
        "web": {"mode": "SIMPLE", "caCertificates": ca},
        "web-other": {"mode": "SIMPLE", "caCertificates": ca},
    }
    return [
        kit.vs_config("DestinationRule", NS, name, {"host": fq(name), "trafficPolicy": {"tls": tls}})
        for name, tls in rules.items()
    ]


def _l4_configs(kit: Any, ports: dict[str, int], cidr_base: str, uds: Path) -> list[Any]:
    cidr = {
        "hosts": ["cidr.example.com"],
        "addresses": [f"{cidr_base}.0/24"],
        "ports": [{"number": ports["cidr"], "name": "tcp", "protocol": "TCP"}],
        "location": "MESH_EXTERNAL",
        "resolution": "STATIC",
        "endpoints": [{"address": "127.0.0.1", "ports": {"tcp": ports["app-cidr"]}}],
    }
    unix = {
        "hosts": ["uds.example.com"],
        "ports": [{"number": ports["uds"], "name": "tcp", "protocol": "TCP"}],
        "location": "MESH_EXTERNAL",
        "resolution": "STATIC",
        "endpoints": [{"address": f"unix://{uds}"}],
    }
    # DNS resolution with a Unix socket endpoint (allowed by Istio's validation): a STATIC cluster
    unix_dns = {**unix, "hosts": ["uds-dns.example.com"], "resolution": "DNS"}
    unix_dns["ports"] = [{"number": ports["uds-dns"], "name": "tcp", "protocol": "TCP"}]
    return [
        kit.vs_config("ServiceEntry", NS, "cidr", cidr),
        kit.vs_config("ServiceEntry", NS, "uds", unix),
        kit.vs_config("ServiceEntry", NS, "uds-dns", unix_dns),
    ]


def _gateway_configs(kit: Any, ports: dict[str, int], gw_ip: str, files: dict[str, Path]) -> list[Any]:
    def server(name: str, cert: Path, key: Path) -> dict[str, Any]:
        return {
            "port": {"number": ports[name], "name": name, "protocol": "TLS"},
            "bind": gw_ip,
            "hosts": [GW_HOST],
            "tls": {"mode": "SIMPLE", "serverCertificate": str(cert), "privateKey": str(key)},
        }

    gateway = {
        "selector": {"istio": "egressgateway"},
        "servers": [server("gw-present", *files["present"]), server("gw-missing", *files["missing"])],
    }
    route = {"destination": {"host": fq("gw-echo"), "port": {"number": ports["gw-echo"]}}}
    vs = {"hosts": [GW_HOST], "gateways": ["files"], "tcp": [{"route": [route]}]}
    return [kit.vs_config("Gateway", NS, "files", gateway), kit.vs_config("VirtualService", NS, "files", vs)]


def _certs(tmp: Path) -> dict[str, tuple[Path, Path]]:
    certs = {
        "ca": write_self_signed(tmp / "ca-a", "ca-a"),
        "other-ca": write_self_signed(tmp / "ca-b", "ca-b"),
        "client-ca": write_self_signed(tmp / "client-ca", "client-ca"),
    }
    certs["good"] = write_signed(tmp / "good", certs["ca"], GOOD, (GOOD,))
    certs["stranger"] = write_signed(tmp / "stranger", certs["other-ca"], GOOD, (GOOD,))
    certs["client"] = write_signed(tmp / "client", certs["client-ca"], "client", ("client.example.com",))
    certs["gw"] = write_signed(tmp / "gw", certs["ca"], GW_HOST, (GW_HOST,))
    certs["web"] = write_signed(tmp / "web", certs["ca"], fq("web"), (fq("web"),))
    return certs


@pytest.fixture(scope="module", params=["sotw", "delta"])
def mesh(
    request: pytest.FixtureRequest, kit: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    tmp: Path = tmp_path_factory.mktemp(f"upstream-tls-{request.param}")
    base = kit.loopback_base()
    addr = {
        "good": base + "21",
        "stranger": base + "22",
        "mutual": base + "23",
        "echo": base + "24",
        "https": base + "25",
    }
    gw_ip = base + "60"
    names = [
        *UPSTREAMS,
        *(f"app-{a}" for a in addr),
        "app-cidr",
        "cidr",
        "uds",
        "uds-dns",
        "gw-present",
        "gw-missing",
        "gw-origin",
    ]
    ports = {n: kit.free_port_on(["0.0.0.0", *addr.values(), gw_ip]) for n in names}
    certs = _certs(tmp)
    cidr_base = kit.loopback_base()[:-1]
    uds = tmp / "uds.sock"
    procs: list[Any] = []
    try:
        apps: dict[str, Any] = {
            "uds": UdsEcho(uds),
            "cidr": kit.L4App("cidr", "127.0.0.1", ports["app-cidr"]),
        }
        procs += apps.values()
        for name in ("good", "stranger", "mutual"):
            apps[name] = kit.L4App(
                name, addr[name], ports[f"app-{name}"], *certs[name if name != "mutual" else "good"]
            )
            procs.append(apps[name])
        apps["mutual"].tls.verify_mode = ssl.CERT_REQUIRED  # the server requires a client certificate
        apps["mutual"].tls.load_verify_locations(str(certs["client-ca"][0]))
        apps["echo"] = kit.L4App("echo", addr["echo"], ports["app-echo"])
        procs.append(apps["echo"])
        apps["https"] = HttpsApp(addr["https"], ports["app-https"], *certs["web"])
        procs.append(apps["https"])
        nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")  # a bus of its own per run
        nats.start()
        procs.append(nats)
        citadel = CitadelProcess(tmp / "citadel", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        procs.append(citadel)
        agent = NodeAgentProcess(
            tmp / "agent",
            citadel.target,
            tmp / "citadel" / "root-cert.pem",
            make_token(tmp / "citadel", NS, "client", "istio-ca", 3600),
            args=["--file-credential-poll", "0.2"],
        )
        agent.start()
        procs.append(agent)
        configs = _tls_rules(kit, certs) + _l4_configs(kit, ports, cidr_base, uds)
        bus = kit.publish(nats.url, _registry({**addr}, ports), configs)
        pilot = kit.start_pilot(nats.url, tmp, f"pilot-upstream-tls-{request.param}")
        procs.append(pilot)
        envoys = []
        for kind, ip, pod, labels in (
            ("sidecar", "0.0.0.0", "client-1", {"app": "client"}),
            ("router", gw_ip, "egress", {"istio": "egressgateway"}),
        ):
            opts = kit.proxy_options(
                kind, ip, pod, NS, labels, [f"127.0.0.1:{pilot.grpc}"], request.param == "delta"
            )
            opts.sds_socket = str(agent.socket)
            envoys.append(kit.start_envoy(tmp, f"upstream-tls-{pod}-{request.param}", opts))
            procs.append(envoys[-1])
        mesh = Mesh(kit, ports, certs, apps, envoys[0], envoys[1], pilot, bus, tmp, cidr_base, gw_ip)
        kit.wait_until(lambda: mesh.send("good") == b"good:hello", 60, "SIMPLE TLS to the good server")
        yield mesh
    finally:
        kit.stop_all(*reversed(procs))


def test_simple_tls_with_the_right_ca_and_san_reaches_the_server(mesh: Mesh) -> None:
    assert mesh.send("good", b"ping") == b"good:ping"
    assert mesh.apps["good"].seen[-1] == b"ping"


@pytest.mark.parametrize(
    ("service", "stat"), [("wrong-ca", "ssl.fail_verify_error"), ("wrong-san", "ssl.fail_verify_san")]
)
def test_simple_tls_refuses_a_server_it_cannot_verify(mesh: Mesh, service: str, stat: str) -> None:
    upstream = mesh.apps[UPSTREAMS[service]]
    before = len(upstream.seen)
    answer = mesh.send(service, b"secret")
    assert b"secret" not in answer, answer
    assert len(upstream.seen) == before  # the server never got the bytes
    cluster = f"cluster.outbound|{mesh.ports[service]}||{fq(service)}"
    mesh.kit.wait_until(lambda: mesh.envoy.stat(f"{cluster}.{stat}") >= 1, 10, f"{stat} counted")


def test_mutual_tls_presents_the_client_certificate(mesh: Mesh) -> None:
    assert mesh.send("mutual", b"hi") == b"mutual:hi"
    # the same server refuses a client that has no certificate to present
    answer = mesh.send("no-client-cert", b"hi")
    assert b"mutual:hi" not in answer, answer


def test_sans_without_a_ca_verify_with_the_system_roots(mesh: Mesh) -> None:
    dump = mesh.envoy.admin_get("/config_dump?resource=dynamic_active_clusters")
    assert "file-root:system" in dump
    answer = mesh.send("system", b"hi")  # the test CA is not among the system roots
    assert b"good:hi" not in answer, answer
    cluster = f"cluster.outbound|{mesh.ports['system']}||{fq('system')}"
    mesh.kit.wait_until(lambda: mesh.envoy.stat(f"{cluster}.ssl.fail_verify_error") >= 1, 10, "refused")
    mesh.assert_no_rejects()


def test_a_missing_ca_file_waits_then_is_used_once_it_appears(mesh: Mesh) -> None:
    ca = mesh.tmp / "late" / "ca.pem"
    tls = {"mode": "SIMPLE", "caCertificates": str(ca), "sni": GOOD}
    mesh.bus.put_configs(
        mesh.kit.vs_config("DestinationRule", NS, "late", {"host": fq("late"), "trafficPolicy": {"tls": tls}})
    )
    # accepted and warming (Envoy waits for the secret), never rejected
    cluster = f"outbound|{mesh.ports['late']}||{fq('late')}"
    mesh.kit.wait_until(lambda: cluster in _names(mesh.envoy, "dynamic_warming_clusters"), 30, "warming")
    assert mesh.send("late") != b"good:hello"
    mesh.assert_no_rejects()
    ca.parent.mkdir()
    shutil.copy(mesh.certs["ca"][0], ca)
    mesh.kit.wait_until(lambda: mesh.send("late") == b"good:hello", 30, "TLS once the CA file exists")


def test_cidr_service_entry_is_a_prefix_chain_on_the_wildcard_listener(mesh: Mesh) -> None:
    port = mesh.ports["cidr"]
    assert mesh.send("cidr", b"in", f"{mesh.cidr_base}.5") == b"cidr:in"
    assert mesh.send("cidr", b"in", f"{mesh.cidr_base}.250") == b"cidr:in"
    outside = "127.0.0.1" if not mesh.cidr_base.startswith("127.0.0") else "127.1.1.1"
    assert b"cidr:" not in mesh.send("cidr", b"out", outside)
    stat = f"listener.0.0.0.0_{port}.no_filter_chain_match"
    mesh.kit.wait_until(lambda: mesh.envoy.stat(stat) >= 1, 10, "no chain for an address outside the CIDR")
    mesh.assert_no_rejects()


def test_unix_socket_endpoint_is_reached_as_a_pipe(mesh: Mesh) -> None:
    assert mesh.send("uds", b"via-pipe") == b"uds:via-pipe"
    assert mesh.send("uds-dns", b"via-pipe") == b"uds:via-pipe"
    dump = mesh.envoy.admin_get("/config_dump?include_eds=true")
    assert '"pipe"' in dump and str(mesh.tmp / "uds.sock") in dump


def _names(envoy: Any, resource: str, warming: bool = False) -> list[str]:
    """Names in one config_dump resource list (clusters, or listeners in their warming state)."""
    dump = json.loads(envoy.admin_get(f"/config_dump?resource={resource}"))
    out = []
    for entry in dump.get("configs", []):
        if warming:
            out.append(entry.get("warming_state", {}).get("listener", {}).get("name", ""))
        else:
            out.append(entry.get("cluster", {}).get("name", ""))
    return out


def _gw_tls(mesh: Mesh, name: str) -> tuple[bytes, bytes]:
    return tls_exchange(mesh.gw_ip, mesh.ports[name], GW_HOST, mesh.certs["ca"][0], b"through-gw")


def test_gateway_file_certificates_are_served_once_the_files_exist(mesh: Mesh) -> None:
    files = {
        "present": mesh.certs["gw"],
        "missing": (mesh.tmp / "gwm" / "tls.crt", mesh.tmp / "gwm" / "tls.key"),
    }
    mesh.bus.put_configs(*_gateway_configs(mesh.kit, mesh.ports, mesh.gw_ip, files))
    # accepted and warming, waiting for its certificate (seen before Envoy's 15 s fetch timeout)
    listener = f"{mesh.gw_ip}_{mesh.ports['gw-missing']}"
    warming = lambda: listener in _names(mesh.gateway, "dynamic_listeners", warming=True)  # noqa: E731
    mesh.kit.wait_until(warming, 10, "the listener with missing files warming")
    peer, answer = mesh.kit.wait_until(lambda: _gw_tls(mesh, "gw-present"), 30, "TLS from the present files")
    assert peer == ssl.PEM_cert_to_DER_cert(mesh.certs["gw"][0].read_text())
    assert answer == b"echo:through-gw"
    with pytest.raises((OSError, ssl.SSLError)):
        _gw_tls(mesh, "gw-missing")
    mesh.assert_no_rejects()
    files["missing"][0].parent.mkdir()
    shutil.copy(mesh.certs["gw"][1], files["missing"][1])
    shutil.copy(mesh.certs["gw"][0], files["missing"][0])
    peer, answer = mesh.kit.wait_until(lambda: _gw_tls(mesh, "gw-missing"), 40, "TLS once the files exist")
    assert peer == ssl.PEM_cert_to_DER_cert(mesh.certs["gw"][0].read_text())
    assert answer == b"echo:through-gw"


def test_egress_gateway_originates_tls_with_the_destination_rule(mesh: Mesh) -> None:
    """Istio's egress TLS origination: plain TCP into the gateway, TLS verified with caCertificates out."""
    server = {
        "port": {"number": mesh.ports["gw-origin"], "name": "tcp", "protocol": "TCP"},
        "bind": mesh.gw_ip,
        "hosts": ["*"],
    }
    to_good = {"destination": {"host": fq("good"), "port": {"number": mesh.ports["good"]}}}
    mesh.bus.put_configs(
        mesh.kit.vs_config(
            "Gateway", NS, "origin", {"selector": {"istio": "egressgateway"}, "servers": [server]}
        ),
        mesh.kit.vs_config(
            "VirtualService",
            NS,
            "origin",
            {"hosts": ["*"], "gateways": ["origin"], "tcp": [{"route": [to_good]}]},
        ),
    )
    send = lambda: tcp_exchange(mesh.gw_ip, mesh.ports["gw-origin"], b"via-gw")  # noqa: E731
    assert mesh.kit.wait_until(send, 30, "TLS origination at the gateway") == b"good:via-gw"
    mesh.assert_no_rejects()


def test_http_tls_takes_sni_from_the_host_and_checks_the_certificate_against_it(mesh: Mesh) -> None:
    """No ``sni`` and no ``subjectAltNames`` on an HTTP port: Envoy's auto SNI and auto SAN validation."""

    def get(service: str) -> httpx.Response:
        url = f"http://127.0.0.1:{mesh.ports[service]}/"
        return httpx.get(url, headers={"host": fq(service)}, timeout=5)

    answer = mesh.kit.wait_until(lambda: get("web").status_code == 200 and get("web"), 30, "HTTPS upstream")
    assert answer.text == f"hello {fq('web')}"
    # the same server, reached as another host: its certificate does not name that host
    assert get("web-other").status_code == 503
    cluster = f"cluster.outbound|{mesh.ports['web-other']}||{fq('web-other')}"
    mesh.kit.wait_until(lambda: mesh.envoy.stat(f"{cluster}.ssl.fail_verify_san") >= 1, 10, "SAN refused")
