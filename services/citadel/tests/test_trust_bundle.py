"""Citadel publishes its live roots to the bus under the trust domain, and again after a change."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from cryptography import x509

from meshplane.citadel.testing import CitadelProcess
from meshplane.shared.bus import Buckets, Bus, BusOptions, EventType
from meshplane.shared.natsserver import NatsServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def test_trust_bundle_on_bus_follows_root_rotation(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    env = {
        "CITADEL_CA_KEY_TYPE": "ec",
        "CITADEL_SELF_SIGNED_CA_CERT_TTL": "20s",
        "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL": "1s",
        "CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE": "80",
        "CITADEL_ENABLE_JITTER_FOR_ROOT_CERT_ROTATOR": "false",
    }
    citadel = CitadelProcess(
        tmp_path / "ca", tmp_path / "citadel.log", args=["--nats-url", nats_server.url], env=env
    )
    await asyncio.to_thread(citadel.start)
    try:
        bundles = []
        async with asyncio.timeout(40), Buckets(bus).trust.watch() as watch:
            async for event in watch:
                if event.type is EventType.PUT and event.key == "cluster.local" and event.value:
                    bundles.append(list(event.value.root_certs_pem))
                    if len(bundles[-1]) >= 2:
                        break
        seen_at = datetime.datetime.now(datetime.UTC)
        root_file = (tmp_path / "ca" / "root-cert.pem").read_text()
    finally:
        await asyncio.to_thread(citadel.stop)
    first, rotated = bundles[0], bundles[-1]
    assert len(first) == 1
    # Not before the grace window: the root rotates once 80 % of its lifetime or less is left
    # (lifetime as written in the certificate, which is backdated a little for clock skew).
    old_root = x509.load_pem_x509_certificate(first[0].encode())
    lifetime = (old_root.not_valid_after_utc - old_root.not_valid_before_utc).total_seconds()
    assert (old_root.not_valid_after_utc - seen_at).total_seconds() <= 0.8 * lifetime + 0.5
    # after rotation: the new root (now in root-cert.pem) first, the old one still trusted
    assert rotated[0] == root_file
    assert first[0] in rotated


async def test_citadel_serves_without_the_bus_and_publishes_once_it_appears(tmp_path: Path) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    citadel = CitadelProcess(
        tmp_path / "ca",
        tmp_path / "citadel.log",
        args=["--nats-url", nats.url],
        env={"CITADEL_CA_KEY_TYPE": "ec"},
    )
    await asyncio.to_thread(citadel.start)  # ready although the bus is not there
    try:
        assert citadel.proc is not None and citadel.proc.poll() is None
        await asyncio.to_thread(nats.start)
        bus = await Bus.connect(BusOptions(url=nats.url))
        try:
            roots: list[str] = []
            async with asyncio.timeout(40), Buckets(bus).trust.watch() as watch:
                async for event in watch:
                    if event.type is EventType.PUT and event.key == "cluster.local" and event.value:
                        roots = list(event.value.root_certs_pem)
                        break
            # and it announces itself for `meshctl version`
            components = await Buckets(bus).components.items()
        finally:
            await bus.close()
        assert roots == [citadel.root_pem().decode()]
        citadels = [c for c in components.values() if c.component == "citadel"]
        assert len(citadels) == 1 and citadels[0].endpoints["grpc"].endswith(
            f":{citadel.target.rsplit(':', 1)[1]}"
        )
    finally:
        await asyncio.to_thread(citadel.stop)
        nats.stop()
