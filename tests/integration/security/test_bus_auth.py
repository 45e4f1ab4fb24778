"""The bus's trust boundary with the real nats-server (TLS, one nkey per component, allow lists):
who is refused, what each identity may not write, and a node agent refusing an unsigned root."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import nats
import nats.errors
import pytest

from meshplane.citadel.testing import CitadelProcess, NodeAgentProcess
from meshplane.citadel.testing.roots import foreign_root, reissued_root
from meshplane.citadel.testing.sds import root_served
from meshplane.ctl.token import make_token
from meshplane.proto.bus.v1 import config_pb2, status_pb2, workload_entry_pb2
from meshplane.shared.bus import Buckets, Bus, BusOptions, EventType, PermissionDenied
from meshplane.shared.bus.buckets import TRUST_BUCKET, config_key
from meshplane.shared.bus.pki import BusCredentials, BusPki, new_seed
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.scrape import scrape

REFUSED = "meshplane_nodeagent_trust_bundles_refused_total"


async def as_identity(server: NatsServer, pki: BusPki, identity: str) -> Bus:
    return await Bus.connect(
        BusOptions(url=server.url, credentials=pki.credentials(identity), publish_deadline=3.0, name=identity)
    )


def vs(name: str) -> config_pb2.ConfigResource:
    return config_pb2.ConfigResource(kind="VirtualService", namespace="default", name=name)


async def test_a_client_without_an_identity_is_refused(nats_server: NatsServer, bus_pki: BusPki) -> None:
    ctx = ssl.create_default_context(cafile=str(bus_pki.ca_file))
    # TLS verifies, but no nkey: nats-server answers "Authorization Violation"
    with pytest.raises(nats.errors.Error, match="[Aa]uthorization"):
        await nats.connect(nats_server.url, tls=ctx, allow_reconnect=False, connect_timeout=3)
    # plaintext: the server requires TLS
    with pytest.raises((nats.errors.Error, OSError, ssl.SSLError)):
        await nats.connect(nats_server.url, allow_reconnect=False, connect_timeout=3)
    assert "authentication error" in (nats_server.log_file or Path()).read_text()


async def test_an_unknown_key_is_refused(nats_server: NatsServer, bus_pki: BusPki, tmp_path: Path) -> None:
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "ca.crt").write_bytes(bus_pki.ca_file.read_bytes())
    (tmp_path / "stranger" / "nkey.seed").write_bytes(new_seed())
    stranger = BusCredentials.from_dir(tmp_path / "stranger", "stranger")
    with pytest.raises(Exception, match="[Aa]uthorization|failed"):
        await Bus.connect(BusOptions(url=nats_server.url, credentials=stranger, connect_timeout=2.0))


async def test_a_server_signed_by_another_ca_is_not_trusted(tmp_path: Path) -> None:
    ours, theirs = BusPki.create(tmp_path / "ours"), BusPki.create(tmp_path / "theirs")
    server = NatsServer(store_dir=tmp_path / "nats", config_file=theirs.server_config).start()
    try:
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|failed"):
            await Bus.connect(
                BusOptions(url=server.url, credentials=ours.credentials("pilot"), connect_timeout=2.0)
            )
    finally:
        server.stop()


async def test_only_galley_writes_config_and_pilot_reads_it(nats_server: NatsServer, bus_pki: BusPki) -> None:
    galley = await as_identity(nats_server, bus_pki, "galley")
    pilot = await as_identity(nats_server, bus_pki, "pilot")
    citadel = await as_identity(nats_server, bus_pki, "citadel")
    try:
        await citadel.ensure_bucket(TRUST_BUCKET)  # exists, as in a running mesh
        await Buckets(galley).config.put(
            config_key("networking.istio.io", "VirtualService", "default", "a"), vs("a")
        )
        with pytest.raises(PermissionDenied, match="pilot.*mesh-config"):
            await Buckets(pilot).config.put(
                config_key("networking.istio.io", "VirtualService", "default", "evil"), vs("evil")
            )
        assert "Publish Violation" in (nats_server.log_file or Path()).read_text()
        seen = await asyncio.wait_for(Buckets(pilot).config.items(), 10)
        assert [v.name for v in seen.values()] == ["a"]  # Pilot reads; its write never landed
        # Pilot writes proxy status and its own component record, not another component's
        await Buckets(pilot).proxy_status.put("pilot-1.a=2Edefault", status_pb2.ProxyStatus(proxy_id="a"))
        await Buckets(pilot).components.put("pilot.p1", status_pb2.ComponentInfo(component="pilot"))
        with pytest.raises(PermissionDenied):
            await Buckets(pilot).components.put("galley.g1", status_pb2.ComponentInfo(component="galley"))
        with pytest.raises(PermissionDenied):
            await Buckets(pilot).trust.put("cluster.local", status_pb2.TrustBundle())
        # auto-registered WorkloadEntries are Pilot's own bucket: Galley writes config, not these
        entry = workload_entry_pb2.RegisteredWorkloadEntry()
        await Buckets(pilot).workload_entries.put("vms.db-10=2E0=2E0=2E5", entry)
        with pytest.raises(PermissionDenied, match="galley.*mesh-workload-entries"):
            await Buckets(galley).workload_entries.put("vms.evil", entry)
    finally:
        for bus in (galley, pilot, citadel):
            await bus.close()


async def test_a_reader_started_before_the_writer_syncs_on_empty_state(
    nats_server: NatsServer, bus_pki: BusPki
) -> None:
    """Pilot may not create the config bucket; before Galley has run it sees an empty, synced
    state (and becomes ready on it), then Galley's first objects as changes."""
    pilot = await as_identity(nats_server, bus_pki, "pilot")
    galley = await as_identity(nats_server, bus_pki, "galley")
    key = config_key("networking.istio.io", "VirtualService", "default", "a")
    try:
        assert await Buckets(pilot).config.get(key) is None
        async with Buckets(pilot).config.watch() as watch:
            first = await asyncio.wait_for(anext(watch), 10)
            assert first.type is EventType.SYNCED
            await Buckets(galley).config.put(key, vs("a"))
            change = await asyncio.wait_for(anext(watch), 15)
            assert (change.type, change.key, change.value) == (EventType.PUT, key, vs("a"))
    finally:
        await pilot.close()
        await galley.close()


@pytest.mark.parametrize("identity", ["node-agent", "meshctl", "galley"])
async def test_only_citadel_writes_trust(nats_server: NatsServer, bus_pki: BusPki, identity: str) -> None:
    citadel = await as_identity(nats_server, bus_pki, "citadel")
    other = await as_identity(nats_server, bus_pki, identity)
    try:
        await Buckets(citadel).trust.put("cluster.local", status_pb2.TrustBundle(version="v1"))
        with pytest.raises(PermissionDenied):
            await Buckets(other).trust.put("cluster.local", status_pb2.TrustBundle(version="evil"))
        if identity != "galley":  # Galley reads no trust bundle
            got = await Buckets(other).trust.get("cluster.local")
            assert got is not None and got.version == "v1"
    finally:
        await citadel.close()
        await other.close()


async def test_meshctl_reads_everything_and_writes_nothing(nats_server: NatsServer, bus_pki: BusPki) -> None:
    pilot = await as_identity(nats_server, bus_pki, "pilot")
    meshctl = await as_identity(nats_server, bus_pki, "meshctl")
    try:
        await Buckets(pilot).proxy_status.put("p.x", status_pb2.ProxyStatus(proxy_id="x"))
        await Buckets(pilot).components.put("pilot.x", status_pb2.ComponentInfo(component="pilot"))
        assert list(await asyncio.wait_for(Buckets(meshctl).proxy_status.items(), 10)) == ["p.x"]
        for kv in (Buckets(meshctl).proxy_status, Buckets(meshctl).components):
            with pytest.raises(PermissionDenied):
                await kv.delete("pilot.x")
    finally:
        await pilot.close()
        await meshctl.close()


def _served_roots(agent: NodeAgentProcess) -> str:
    return root_served(agent.socket)


def test_node_agent_refuses_a_root_its_trusted_root_did_not_sign(
    nats_server: NatsServer, bus_pki: BusPki, tmp_path: Path
) -> None:
    citadel = CitadelProcess(
        tmp_path / "ca",
        tmp_path / "citadel.log",
        ["--nats-url", nats_server.url],
        {"CITADEL_CA_KEY_TYPE": "ec"},
    )
    citadel.start()
    port = free_port()
    token = make_token(tmp_path / "ca", "shop", "cart", "istio-ca", 3600)
    agent = NodeAgentProcess(
        tmp_path / "agent",
        citadel.target,
        tmp_path / "ca" / "root-cert.pem",
        token,
        ["--nats-url", nats_server.url, "--monitoring-addr", f"127.0.0.1:{port}"],
    )

    def publish(roots: list[str], version: str) -> None:
        async def go() -> None:
            bus = await as_identity(nats_server, bus_pki, "citadel")  # the only identity allowed to
            try:
                bundle = status_pb2.TrustBundle(
                    trust_domain="cluster.local", root_certs_pem=roots, version=version
                )
                await Buckets(bus).trust.put("cluster.local", bundle)
            finally:
                await bus.close()

        asyncio.run(go())

    try:
        agent.start()
        root = citadel.root_pem().decode().strip()
        agent.wait_for(lambda: _served_roots(agent).strip() == root, 30, "Citadel's root served")
        # a root nobody trusted signs, even published under Citadel's identity: refused, counted
        publish([root, foreign_root()], "unsigned")
        agent.wait_for(lambda: scrape(port, REFUSED).get(REFUSED) == 1.0, 30, "the bundle refused")
        assert _served_roots(agent).strip() == root
        assert "not signed by a trusted root's key" in agent.log_file.read_text()
        # Istio's rotation: the new root signed with the current root's key is taken
        rotated = reissued_root(tmp_path / "ca")
        publish([root, rotated], "rotated")
        agent.wait_for(lambda: rotated in _served_roots(agent), 30, "the rotated root served")
        assert scrape(port, REFUSED).get(REFUSED) == 1.0
    finally:
        agent.stop()
        citadel.stop()


def test_the_cni_agents_bucket_is_the_one_its_identity_may_write() -> None:
    from meshplane.cni.agent.events import CNI_BUCKET
    from meshplane.shared.bus.identities import CNI_AGENT

    assert CNI_AGENT.writes == {CNI_BUCKET: ""}
