"""Endpoints across networks through the east-west gateway, with real Envoys in real network
namespaces (see ``eastwest_kit``): traffic split by endpoint count, mTLS end to end (the callee
sees the caller's SPIFFE ID; a caller outside the mesh cannot pass), and locality failover from
network A to network B when A's endpoints are killed. The tests run in order on one mesh; the
failover test kills network A's workload and goes last."""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from meshplane.shared.testing.podnet import unavailable_reason
from tests.integration.multicluster.eastwest_kit import HOST, PORT, EastWestMesh, eastwest_mesh, kit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(400),
    pytest.mark.xdist_group("eastwest"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"
A_SERVERS, B_SERVERS = 1, 3


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EastWestMesh]:
    with eastwest_mesh(tmp_path_factory.mktemp("eastwest"), A_SERVERS, B_SERVERS) as m:
        yield m


def _networks(answers: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(a.get("network", f"status {a['status']}") for a in answers)


def _sees_both(mesh: EastWestMesh) -> bool:
    return set(_networks(mesh.call(20))) == {"network-a", "network-b"}


def test_networks_cannot_reach_each_other_but_through_the_gateway(mesh: EastWestMesh) -> None:
    def probe(ip: str, port: int) -> str:
        return mesh.in_pod(
            "client",
            f"import socket\ntry:\n socket.create_connection(({ip!r}, {port}), 3); print('open')\n"
            "except OSError as e: print(type(e).__name__)",
        )

    kit_wait(mesh, lambda: probe(mesh.gateway_ip, 15443) == "open", "the gateway's 15443 listener")
    assert probe(mesh.pods["b1"].ip, PORT) != "open"  # network A cannot reach B's workload
    assert probe(mesh.pods["a1"].ip, PORT) == "open"  # but its own


def test_traffic_splits_by_endpoint_count_across_networks(mesh: EastWestMesh) -> None:
    kit_wait(mesh, lambda: _sees_both(mesh), "answers from both networks")
    # the client's EDS: a1 direct, network B as one gateway endpoint of weight B_SERVERS
    answers = mesh.call(400)
    counts = _networks(answers)
    assert set(counts) == {"network-a", "network-b"}, counts
    share_b = counts["network-b"] / len(answers)
    expected = B_SERVERS / (A_SERVERS + B_SERVERS)
    assert abs(share_b - expected) < 0.1, (counts, expected)
    assert {a["name"] for a in answers if a.get("network") == "network-b"} <= {"b1", "b2", "b3"}


def test_cross_network_mtls_carries_the_callers_identity(mesh: EastWestMesh) -> None:
    kit_wait(mesh, lambda: _sees_both(mesh), "answers from both networks")
    from_b = [a for a in mesh.call(40) if a.get("network") == "network-b"]
    assert from_b
    for answer in from_b:
        assert f"URI={CLIENT_ID}" in answer["headers"]["x-forwarded-client-cert"]
    # a caller outside the mesh, on network A: plaintext gets no answer from the gateway, and TLS
    # with the right SNI but no mesh certificate is refused by the callee's sidecar (STRICT)
    plain = (
        f"import socket\ns = socket.create_connection(({mesh.gateway_ip!r}, 15443), 5)\n"
        f"s.sendall(b'GET / HTTP/1.1\\r\\nhost: {HOST}\\r\\n\\r\\n')\n"
        "try: print(repr(s.recv(100)))\nexcept OSError as e: print(type(e).__name__)"
    )
    assert mesh.in_pod("client", plain) in ("b''", "ConnectionResetError")
    tls = (
        "import socket, ssl\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False\n"
        "c.verify_mode = ssl.CERT_NONE; c.set_alpn_protocols(['istio'])\n"
        f"s = socket.create_connection(({mesh.gateway_ip!r}, 15443), 5)\n"
        f"try:\n t = c.wrap_socket(s, server_hostname='outbound_.{PORT}_._.{HOST}')\n"
        " t.sendall(b'GET / HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n'); print('answer', repr(t.recv(100)))\n"
        "except (OSError, ssl.SSLError) as e: print('refused', type(e).__name__)"
    )
    result = mesh.in_pod("client", tls)
    assert result.startswith("refused") or result == "answer b''", result


def test_locality_failover_stays_local_until_local_endpoints_die(mesh: EastWestMesh) -> None:
    mesh.apply(
        "DestinationRule",
        "web",
        {
            "host": HOST,
            "trafficPolicy": {
                "loadBalancer": {"localityLbSetting": {"enabled": True}},
                # Envoy's default maxEjectionPercent (10%) would never eject network A's one host
                "outlierDetection": {
                    "consecutive5xxErrors": 1,
                    "interval": "1s",
                    "baseEjectionTime": "60s",
                    "maxEjectionPercent": 100,
                },
            },
        },
    )
    kit_wait(mesh, lambda: set(_networks(mesh.call(20))) == {"network-a"}, "traffic kept on network A")
    assert set(_networks(mesh.call(50))) == {"network-a"}
    a1 = mesh.pods["a1"].app
    assert a1 is not None
    os.kill(a1.popen.pid, signal.SIGKILL)  # network A's only workload dies
    kit_wait(mesh, lambda: set(_networks(mesh.call(10))) == {"network-b"}, "failover to network B")
    answers = mesh.call(50)
    assert set(_networks(answers)) == {"network-b"}
    assert all(f"URI={CLIENT_ID}" in a["headers"]["x-forwarded-client-cert"] for a in answers)


def kit_wait(mesh: EastWestMesh, check: Any, what: str, timeout: float = 90) -> None:
    kit.wait_until(check, timeout, what, interval=0.5)
