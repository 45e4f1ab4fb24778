"""Following the trust bundle on the bus: every live root of our trust domain goes into ``ROOTCA``."""

from __future__ import annotations

import asyncio
import logging

from meshplane.citadel.nodeagent.cache import SecretCache
from meshplane.shared.bus import Buckets, Bus, BusError, BusOptions, EventType

log = logging.getLogger(__name__)


async def follow_trust_bundle(
    nats_url: str, trust_domain: str, cache: SecretCache, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            bus = await Bus.connect(BusOptions(url=nats_url, connect_timeout=30.0))
        except BusError as exc:
            log.warning("bus not reachable, using the CA response's root meanwhile: %s", exc)
            continue
        try:
            async with Buckets(bus).trust.watch() as watch:
                async for event in watch:
                    if stop.is_set():
                        return
                    if event.type is EventType.PUT and event.key == trust_domain and event.value is not None:
                        roots = list(event.value.root_certs_pem)
                        log.info("trust bundle %s: %d roots", event.value.version, len(roots))
                        await cache.set_bus_roots(roots)
        finally:
            await bus.close()
