"""VirtualService ``tcp`` and ``tls`` routes on a sidecar's outbound side, through a real Envoy
(matched by port, SNI, ``sourceLabels`` and ``destinationSubnets``).

The client sidecar has its own loopback address and no iptables (``captureMode: NONE``), so its
outbound listeners bind that address on each service port. Upstreams are tiny TCP and TLS servers
that answer ``<name>:<bytes read>``. The module runs once with SotW and once with Delta xDS.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.sockets import tcp_exchange, tls_exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.xdist_group("sidecar-l4")]

NS = "shop"
LOGIN_SNI = "login.example.com"
STORE_SNI = "store.example.com"

#: service name → (port name, protocol, upstream name or None when it has no workload)
SERVICES = {
    "db": ("tcp", registry_pb2.TCP, "db-old"),
    "db-new": ("tcp", registry_pb2.TCP, "db-new"),
    "secure": ("tls", registry_pb2.TLS, None),
    "login": ("tls", registry_pb2.TLS, "login"),
    "store": ("https", registry_pb2.HTTPS, "store"),
}


def fq(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


@dataclass
class Mesh:
    kit: Any
    ip: str
    ports: dict[str, int]
    certs: dict[str, tuple[Path, Path]]
    apps: dict[str, Any]
    envoy: Any

    def tcp(self, service: str, payload: bytes) -> bytes:
        return tcp_exchange(self.ip, self.ports[service], payload)

    def tls(self, service: str, sni: str, cafile: Path, payload: bytes) -> tuple[bytes, bytes]:
        return tls_exchange(self.ip, self.ports[service], sni, cafile, payload)


def _registry(addr: dict[str, str], ports: dict[str, int]) -> tuple[list[Any], list[Any]]:
    services, workloads = [], []
    for name, (port_name, protocol, upstream) in SERVICES.items():
        port = registry_pb2.ServicePort(name=port_name, number=ports[name], protocol=protocol)
        services.append(registry_pb2.Service(hostname=fq(name), namespace=NS, ports=[port]))
        if upstream is not None:
            workloads.append(
                registry_pb2.WorkloadInstance(
                    name=f"{name}-1",
                    namespace=NS,
                    address=addr[name],
                    services=[fq(name)],
                    labels={"app": name},
                    ports={port_name: ports[name]},
                )
            )
    return services, workloads


def _configs(kit: Any, ports: dict[str, int]) -> list[Any]:
    def to(name: str) -> dict[str, Any]:
        return {"destination": {"host": name, "port": {"number": ports[name]}}}

    return [
        # No CA in this mesh: without this, auto mTLS makes Envoy wait 15 s for SDS secrets.
        kit.vs_config(
            "DestinationRule",
            NS,
            "plaintext",
            {"host": f"*.{NS}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        ),
        kit.vs_config(
            "VirtualService",
            NS,
            "db",
            {
                "hosts": ["db"],
                "tcp": [
                    {"match": [{"port": ports["db"] + 1}], "route": [to("db")]},
                    # neither applies to this client: it is not app=reports, and its connections
                    # go to its own loopback address, not into 192.0.2.0/24
                    {
                        "match": [{"port": ports["db"], "sourceLabels": {"app": "reports"}}],
                        "route": [to("db")],
                    },
                    {
                        "match": [{"port": ports["db"], "destinationSubnets": ["192.0.2.0/24"]}],
                        "route": [to("db")],
                    },
                    {"match": [{"port": ports["db"]}], "route": [to("db-new")]},
                ],
            },
        ),
        kit.vs_config(
            "VirtualService",
            NS,
            "secure",
            {
                "hosts": ["secure", LOGIN_SNI, STORE_SNI],  # Istio: sniHosts must be among the hosts
                "tls": [
                    {"match": [{"port": ports["secure"], "sniHosts": [LOGIN_SNI]}], "route": [to("login")]},
                    {"match": [{"sniHosts": [STORE_SNI]}], "route": [to("store")]},
                ],
            },
        ),
    ]


@pytest.fixture(scope="module", params=["sotw", "delta"])
def mesh(
    request: pytest.FixtureRequest, kit: Any, nats_module: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    tmp: Path = tmp_path_factory.mktemp(f"sidecar-l4-{request.param}")
    base = kit.loopback_base()
    addr = {"client": base + "10", **{name: base + str(20 + i) for i, name in enumerate(SERVICES)}}
    ports = {name: kit.free_port_on(list(addr.values())) for name in SERVICES}
    certs = {
        "login": write_self_signed(tmp / "login", LOGIN_SNI, dns_names=(LOGIN_SNI,)),
        "store": write_self_signed(tmp / "store", STORE_SNI, dns_names=(STORE_SNI,)),
    }
    apps: dict[str, Any] = {}
    pilot = envoy = None
    try:
        for name, (_, _, upstream) in SERVICES.items():
            if upstream is not None:
                apps[name] = kit.L4App(upstream, addr[name], ports[name], *certs.get(name, (None, None)))
        kit.publish(nats_module.url, _registry(addr, ports), _configs(kit, ports))
        pilot = kit.start_pilot(nats_module.url, tmp, f"pilot-l4-{request.param}")
        opts = kit.proxy_options(
            "sidecar",
            addr["client"],
            "client-1",
            NS,
            {"app": "client"},
            [f"127.0.0.1:{pilot.grpc}"],
            request.param == "delta",
        )
        envoy = kit.start_envoy(tmp, f"sidecar-l4-{request.param}", opts)
        mesh = Mesh(kit, addr["client"], ports, certs, apps, envoy)
        kit.wait_until(lambda: mesh.tcp("db", b"ready?"), 30, "the sidecar's TCP listener")
        yield mesh
    finally:
        kit.stop_all(envoy, pilot, *apps.values())


def test_tcp_route_by_port_reaches_the_routed_upstream(mesh: Mesh) -> None:
    before = len(mesh.apps["db"].seen)
    assert mesh.tcp("db", b"select 1") == b"db-new:select 1"
    assert mesh.apps["db-new"].seen[-1] == b"select 1"
    assert len(mesh.apps["db"].seen) == before  # the service's own endpoint got nothing


@pytest.mark.parametrize(("sni", "upstream"), [(LOGIN_SNI, "login"), (STORE_SNI, "store")])
def test_tls_route_by_sni_reaches_the_upstream_that_terminates_tls(
    mesh: Mesh, sni: str, upstream: str
) -> None:
    cafile = mesh.certs[upstream][0]
    peer, answer = mesh.tls("secure", sni, cafile, b"hello")
    assert peer == ssl.PEM_cert_to_DER_cert(cafile.read_text())
    assert answer == f"{upstream}:hello".encode()


def test_tls_route_unknown_sni_is_not_routed(mesh: Mesh) -> None:
    seen = {name: len(app.seen) for name, app in mesh.apps.items()}
    try:
        _, answer = mesh.tls("secure", "other.example.com", mesh.certs["login"][0], b"hello")
    except (ssl.SSLError, ConnectionResetError) as exc:
        answer = str(exc).encode()
    assert b"hello" not in answer, answer
    assert {name: len(app.seen) for name, app in mesh.apps.items()} == seen
    assert mesh.envoy.stat(f"listener.{mesh.ip}_{mesh.ports['secure']}.no_filter_chain_match") >= 1


def test_sidecar_envoy_accepted_every_resource(mesh: Mesh) -> None:
    for kind in ("listener_manager.lds", "cluster_manager.cds"):
        assert mesh.envoy.stat(f"{kind}.update_rejected") == 0, mesh.envoy.log.read_text()[-3000:]
        assert mesh.envoy.stat(f"{kind}.update_success") >= 1
