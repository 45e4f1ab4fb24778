"""The mesh's trust domain, following the MeshConfig on the bus (Citadel and the node agents).

Citadel and the node agent start with ``--trust-domain``, else ``--mesh-config``'s, else
``cluster.local``. With ``--nats-url`` and no ``--trust-domain`` they follow the MeshConfig Galley
publishes (``mesh-meshconfig``); a MeshConfig removed from the bus brings back the start value. A
``--trust-domain`` flag wins and is never followed. In Citadel a certificate signed after a
trustDomain change carries ``spiffe://<new>/ns/<ns>/sa/<sa>`` and the trust bundle is published
under the new domain's key too; a node agent then serves that key's bundle as ``ROOTCA``. Every
Citadel process (main and workers) follows on its own connection. The root certificate and the
local issuer's name keep the start value (certificates already issued stay valid until they rotate).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from meshplane.citadel.buslink import connect_until_stopped
from meshplane.shared.bus import Buckets, EventType
from meshplane.shared.meshconfig import MeshConfigError
from meshplane.shared.meshconfig_bus import KEY, mesh_config_from_bus

log = logging.getLogger("meshplane.citadel.trustdomain")


class TrustDomain:
    """The current trust domain (shared by the authenticators of one process)."""

    def __init__(self, value: str, pinned: bool = False, identity: str = "citadel") -> None:
        self.start = value
        self.value = value
        #: given by ``--trust-domain``: the bus's MeshConfig does not change it
        self.pinned = pinned
        #: the bus identity that reads the MeshConfig (``citadel`` or ``node-agent``)
        self.identity = identity
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the event loop) after every change of the value."""
        self._listeners.append(listener)

    def __str__(self) -> str:
        return self.value

    def set(self, value: str) -> None:
        if value != self.value:
            log.info("trust domain %s (was %s): SPIFFE IDs spiffe://%s/...", value, self.value, value)
        changed, self.value = value != self.value, value
        if changed:
            for listener in self._listeners:
                listener()

    async def follow(self, nats_url: str, stop: asyncio.Event) -> None:
        """Follow the MeshConfig on the bus until ``stop`` (nothing to do when pinned)."""
        if self.pinned:
            await stop.wait()
            return
        bus = await connect_until_stopped(nats_url, stop, "MeshConfig", self.identity)
        if bus is None:
            return
        try:
            async with Buckets(bus).mesh_config.watch() as watch:
                async for ev in watch:
                    if stop.is_set():
                        return
                    if ev.key != KEY or ev.type is EventType.SYNCED:
                        continue
                    if ev.type is not EventType.PUT or ev.value is None:
                        self.set(self.start)
                        continue
                    try:
                        self.set(mesh_config_from_bus(ev.value).trust_domain)
                    except MeshConfigError as exc:
                        log.error("%s; keeping trust domain %s", exc, self.value)
        finally:
            await bus.close()
