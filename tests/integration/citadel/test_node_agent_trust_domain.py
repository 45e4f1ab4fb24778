"""Node agents and the trust bundle follow MeshConfig's trustDomain live (issue 15 item 1): after a
change in Galley's mesh file, Citadel publishes its trust bundle under the new domain too, a running
per-node agent serves the new domain's bundle as ``ROOTCA`` (and no longer the old domain's), and a
new workload's certificate from it carries the new domain; nothing is restarted. An agent given
``--trust-domain`` keeps serving that domain's bundle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.citadel.testing.bus import on_bus
from meshplane.citadel.testing.roots import reissued_root
from meshplane.citadel.testing.sds import sds_secret
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually
from tests.integration.galley.process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def bundle_of(url: str, domain: str) -> status_pb2.TrustBundle | None:
    async def get(bus: Bus) -> status_pb2.TrustBundle | None:
        return await Buckets(bus).trust.get(domain)

    result: status_pb2.TrustBundle | None = on_bus(url, get)
    return result


def workload_uris(socket: Path, token: str) -> list[str]:
    """The URI SANs of the certificate the agent serves a new workload (an SDS stream with its token)."""
    secret = sds_secret(socket, "default", token)
    chain = secret.tls_certificate.certificate_chain.inline_bytes
    cert = x509.load_pem_x509_certificate(chain)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def rootca(socket: Path, token: str) -> str:
    """The roots the agent serves a workload as ``ROOTCA``."""
    return sds_secret(socket, "ROOTCA", token).validation_context.trusted_ca.inline_bytes.decode()


def wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    async def probe() -> bool:
        try:
            return await asyncio.to_thread(check)
        except grpc.RpcError:
            return False

    asyncio.run(eventually(probe, what, timeout))


def test_node_agent_serves_the_new_trust_domain_s_bundle(tmp_path: Path) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    started: list[CitadelProcess | NodeAgentProcess] = []
    try:
        (tmp_path / "config").mkdir()
        mesh_file = tmp_path / "mesh.yaml"
        mesh_file.write_text("trustDomain: old.example\n")
        with run_galley(
            nats.url, tmp_path / "config", tmp_path / "galley.log", "--mesh-config", str(mesh_file)
        ) as galley:
            asyncio.run(galley.wait_ready())
            ca = tmp_path / "ca"
            citadel = CitadelProcess(
                ca, tmp_path / "citadel.log", args=["--nats-url", nats.url], env={"CITADEL_CA_KEY_TYPE": "ec"}
            )
            citadel.start()
            started.append(citadel)
            root = (ca / "root-cert.pem").read_text().strip()
            bus = ["--nats-url", nats.url]
            # per node (tokens on the SDS streams), following the MeshConfig; and one pinned
            agent = NodeAgentProcess(tmp_path / "agent", citadel.target, ca / "root-cert.pem", None, args=bus)
            pinned = NodeAgentProcess(
                tmp_path / "pinned",
                citadel.target,
                ca / "root-cert.pem",
                None,
                args=[*bus, "--trust-domain", "old.example"],
            )
            for proc in (agent, pinned):
                proc.start()
                started.append(proc)

            def token(sa: str) -> str:
                return make_token(ca, "shop", sa, "istio-ca", 600)

            wait(lambda: bundle_of(nats.url, "old.example") is not None, "Citadel's bundle of old.example")
            wait(
                lambda: workload_uris(agent.socket, token("a")) == ["spiffe://old.example/ns/shop/sa/a"],
                "a certificate in old.example",
            )

            mesh_file.write_text("trustDomain: new.example\n")
            wait(lambda: bundle_of(nats.url, "new.example") is not None, "Citadel's bundle under new.example")
            published = bundle_of(nats.url, "new.example")
            assert published is not None and published.trust_domain == "new.example"
            assert [r.strip() for r in published.root_certs_pem] == [root]
            wait(
                lambda: workload_uris(agent.socket, token("b")) == ["spiffe://new.example/ns/shop/sa/b"],
                "a new workload's certificate in new.example, from the running agent",
            )

            # Which key each agent serves now: a second root under each domain (rotated roots,
            # signed by the current root's key, so the agents' root check passes).
            old_only, new_only = reissued_root(ca, "old-two"), reissued_root(ca, "new-two")

            async def publish(b: Bus) -> None:
                trust = Buckets(b).trust
                for domain, extra in (("old.example", old_only), ("new.example", new_only)):
                    bundle = status_pb2.TrustBundle(
                        trust_domain=domain, root_certs_pem=[root, extra], version=f"test-{domain}"
                    )
                    await trust.put(domain, bundle)

            on_bus(nats.url, publish)
            wait(lambda: new_only in rootca(agent.socket, token("c")), "the new domain's bundle as ROOTCA")
            assert old_only not in rootca(agent.socket, token("c"))
            wait(lambda: old_only in rootca(pinned.socket, token("c")), "the pinned agent: old.example's")
            assert new_only not in rootca(pinned.socket, token("c"))
            for proc in (agent, pinned, citadel):
                assert proc.proc is not None and proc.proc.poll() is None
            assert "trust domain new.example (was old.example)" in agent.log()
    finally:
        for proc in reversed(started):
            proc.stop()
        nats.stop()
