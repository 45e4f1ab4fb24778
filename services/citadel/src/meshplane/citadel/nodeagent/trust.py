"""Following the trust bundle on the bus: every live root of our trust domain goes into ``ROOTCA``,
once it has passed :class:`~meshplane.citadel.nodeagent.rootcheck.RootGate` (each root signed by
the key of a root the agent already trusts); a bundle that fails is refused, logged and counted.

While connected, the agent also announces itself in the components bucket (``meshctl version``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from meshplane.citadel.buslink import connect_until_stopped
from meshplane.citadel.nodeagent import metrics
from meshplane.citadel.nodeagent.rootcheck import RootGate, UntrustedRoot
from meshplane.citadel.nodeagent.workloads import Workloads
from meshplane.shared.bus import Buckets, BusError, EventType
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger(__name__)


async def follow_trust_bundle(
    nats_url: str,
    trust_domain: str,
    workloads: Workloads,
    stop: asyncio.Event,
    endpoints: Mapping[str, str] | None = None,
    supervisor: TaskSupervisor | None = None,
    ca_root: Path | None = None,
) -> None:
    """Feed every workload's roots from the bus until ``stop``; while the bus is away they keep theirs.
    ``endpoints`` is what ``meshctl version`` shows for this agent; ``ca_root`` holds the roots it
    trusts from the start."""
    gate = RootGate(ca_root)
    while not stop.is_set():
        bus = await connect_until_stopped(nats_url, stop, "trust bundle", "node-agent")
        if bus is None:
            return
        announcer = ComponentAnnouncer(bus, "node-agent", endpoints or {}, supervisor=supervisor)
        try:
            await announcer.announce()
            async with Buckets(bus).trust.watch() as watch:
                async for event in watch:
                    if event.type is EventType.PUT and event.key == trust_domain and event.value is not None:
                        try:
                            roots = gate.check(list(event.value.root_certs_pem))
                        except UntrustedRoot as exc:
                            metrics.ROOTS_REFUSED.inc()
                            log.error("refused trust bundle %s from the bus: %s", event.value.version, exc)
                            continue
                        log.info("trust bundle %s: %d roots", event.value.version, len(roots))
                        await workloads.set_bus_roots(roots)
        except BusError as exc:
            log.warning("trust bundle watch failed, reconnecting: %s", exc)
            await asyncio.sleep(1.0)
        finally:
            await announcer.withdraw()
            await bus.close()
