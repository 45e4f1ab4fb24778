"""Per-workload identity through ONE per-node node agent, as in Kubernetes (k8s/base/node-agent).

Real nats-server, Citadel, a node agent without ``--token-file`` (per-node mode), real Pilot and
real Envoys bootstrapped like ``meshctl kube-inject``'s sidecar: ``--sds-token-path`` puts
``SDS_TOKEN_PATH`` in the node metadata, and Pilot's SDS configs make Envoy read that file and
send it as ``authorization: Bearer`` on each SDS stream. Every Envoy must get a certificate for
its own service account, and an Envoy without a usable token must get none.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.natsserver import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240), pytest.mark.xdist_group("per-node-sds")]

NS = "default"
HOST = f"server.{NS}.svc.cluster.local"


def _identity(sa: str) -> str:
    return f"spiffe://cluster.local/ns/{NS}/sa/{sa}"


def cert_uris(envoy: Any) -> set[str]:
    """URI SANs of the workload certificates Envoy holds now (admin ``/certs``)."""
    data = json.loads(envoy.admin_get("/certs"))
    chains = [c for entry in data.get("certificates", []) for c in entry.get("cert_chain", [])]
    return {san["uri"] for c in chains for san in c.get("subject_alt_names", []) if "uri" in san}


def warming_secrets(envoy: Any) -> set[str]:
    """Names of SDS secrets Envoy asked for and has not received."""
    dump = json.loads(envoy.admin_get("/config_dump?resource=dynamic_warming_secrets"))
    return {c.get("name", "") for c in dump.get("configs", [])}


def cert_serials(envoy: Any) -> set[str]:
    data = json.loads(envoy.admin_get("/certs"))
    return {c["serial_number"] for entry in data.get("certificates", []) for c in entry.get("cert_chain", [])}


@dataclass
class PerNodeMesh:
    agent: NodeAgentProcess
    envoys: dict[str, Any]
    tmp: Path
    base: str
    pilot: Any


@pytest.fixture(scope="module")
def per_node(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> Iterator[PerNodeMesh]:
    tmp = tmp_path_factory.mktemp("pernode")
    base = kit.loopback_base()
    with ExitStack() as stack:
        nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
        nats.start()
        stack.callback(nats.stop)
        citadel = CitadelProcess(tmp / "ca", tmp / "citadel.log", env={"CITADEL_CA_KEY_TYPE": "ec"})
        citadel.start()
        stack.callback(citadel.stop)
        agent = NodeAgentProcess(tmp / "agent", citadel.target, tmp / "ca" / "root-cert.pem", None)
        agent.start()
        stack.callback(agent.stop)
        # one meshed service, so every sidecar gets an auto-mTLS cluster asking SDS for default/ROOTCA
        port = kit.free_port()
        labels = {"app": "server", "security.istio.io/tlsMode": "istio"}
        svc_port = registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)
        kit.BusWriter(nats.url).put_registry(
            [
                registry_pb2.Service(
                    hostname=HOST, namespace=NS, ports=[svc_port], resolution=registry_pb2.STATIC
                )
            ],
            [
                registry_pb2.WorkloadInstance(
                    name="server-0",
                    namespace=NS,
                    address=base + "200",
                    labels=labels,
                    service_account="server",
                    services=[HOST],
                    health=registry_pb2.HEALTHY,
                    ports={"http": port},
                )
            ],
        )
        pilot = kit.start_pilot(nats.url, tmp, "pilot-pernode")
        stack.callback(pilot.stop)
        tokens = {
            "a": tmp / "a-token",
            "b": tmp / "b-token",
            "unreadable": tmp / "no-such-dir" / "token",  # the token path exists in no form
            "none": None,  # no SDS_TOKEN_PATH: the plain sds-grpc cluster, no credential
        }
        for sa in ("a", "b"):
            path = tokens[sa]
            assert path is not None
            path.write_text(make_token(tmp / "ca", NS, sa, "istio-ca", 3600))
        envoys = {}
        for index, (name, token_path) in enumerate(tokens.items(), start=1):
            opts = kit.proxy_options(
                "sidecar",
                base + str(index),
                f"{name}-0",
                NS,
                {"app": name},
                [f"127.0.0.1:{pilot.grpc}"],
                False,
            )
            opts.service_account = name
            opts.sds_socket = str(agent.socket)
            opts.sds_token_path = str(token_path) if token_path else ""
            envoy = kit.start_envoy(tmp, name, opts)
            stack.callback(envoy.stop)
            envoys[name] = envoy
        yield PerNodeMesh(agent, envoys, tmp, base, pilot)


def test_each_envoy_gets_a_certificate_for_its_own_service_account(per_node: PerNodeMesh, kit: Any) -> None:
    for sa in ("a", "b"):
        envoy = per_node.envoys[sa]
        kit.wait_until(lambda e=envoy: cert_uris(e), 60, f"envoy {sa} holds a workload certificate")
        assert cert_uris(envoy) == {_identity(sa)}, envoy.log.read_text()[-2000:]
        assert "default" not in warming_secrets(envoy)


def test_envoy_without_a_usable_token_gets_no_certificate(per_node: PerNodeMesh, kit: Any) -> None:
    # the certified Envoys prove the agent and Citadel are serving; the others asked and got nothing
    for sa in ("a", "b"):
        kit.wait_until(lambda e=per_node.envoys[sa]: cert_uris(e), 60, f"envoy {sa} certified")
    # Envoy logs each SDS stream the agent (or the token plugin) closed: wait until that happened
    refusals = {
        "unreadable": "closed: 13",  # the token file cannot be read: the stream never gets a credential
        "none": "closed: 16, no workload token",  # the agent answers UNAUTHENTICATED
    }
    for name, refusal in refusals.items():
        envoy = per_node.envoys[name]
        kit.wait_until(
            lambda e=envoy, r=refusal: r in (e.log.read_text() if e.log.exists() else ""),
            60,
            f"envoy {name}'s SDS stream refused",
        )
        assert {"default", "ROOTCA"} <= warming_secrets(envoy)
        assert cert_uris(envoy) == set()


def test_per_node_socket_is_dialable_by_every_workload_user(per_node: PerNodeMesh) -> None:
    # sidecars run as another user (1337) than the agent; streams are identified by token, not socket access
    assert stat.S_IMODE(Path(per_node.agent.socket).stat().st_mode) == 0o666


def test_expired_stream_token_moves_envoy_to_the_files_fresh_token(per_node: PerNodeMesh, kit: Any) -> None:
    # kubelet rewrites the projected token file long before the token expires; a stream keeps the
    # token it started with, so at that token's expiry the agent ends the stream and Envoy
    # reconnects with the file's current token (else renewals would fail once it expired)
    tmp = per_node.tmp
    token_file = tmp / "c-token"
    token_file.write_text(make_token(tmp / "ca", NS, "c", "istio-ca", 15))
    opts = kit.proxy_options(
        "sidecar", per_node.base + "9", "c-0", NS, {"app": "c"}, [f"127.0.0.1:{per_node.pilot.grpc}"], False
    )
    opts.service_account = "c"
    opts.sds_socket = str(per_node.agent.socket)
    opts.sds_token_path = str(token_file)
    envoy = kit.start_envoy(tmp, "c", opts)
    try:
        first = kit.wait_until(
            lambda: cert_serials(envoy), 30, "envoy c certified with its short-lived token"
        )
        token_file.write_text(make_token(tmp / "ca", NS, "c", "istio-ca", 3600))  # as kubelet refreshes it
        kit.wait_until(
            lambda: cert_serials(envoy) and cert_serials(envoy) != first,
            60,
            "a certificate from the fresh token",
        )
        assert cert_uris(envoy) == {_identity("c")}
    finally:
        envoy.stop()
