"""Following the trust bundle on the bus: every live root of our trust domain goes into ``ROOTCA``,
once it has passed :class:`~meshplane.citadel.nodeagent.rootcheck.RootGate` (each root signed by
the key of a root the agent already trusts); a bundle that fails is refused, logged and counted.

The trust domain is followed live (:class:`~meshplane.citadel.trustdomain.TrustDomain`, from the
MeshConfig on the bus unless ``--trust-domain`` pins it): after a change the bundle under the new
domain's key is served, as soon as Citadel (following the same MeshConfig) has published it.

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
from meshplane.citadel.trustdomain import TrustDomain
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, BusError, EventType
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger(__name__)


async def follow_trust_bundle(
    nats_url: str,
    trust_domain: TrustDomain,
    workloads: Workloads,
    stop: asyncio.Event,
    endpoints: Mapping[str, str] | None = None,
    supervisor: TaskSupervisor | None = None,
    ca_root: Path | None = None,
) -> None:
    """Feed every workload's roots from the bus until ``stop``; while the bus is away they keep theirs.
    ``endpoints`` is what ``meshctl version`` shows for this agent; ``ca_root`` holds the roots it
    trusts from the start."""
    follower = _BundleFollower(trust_domain, workloads, RootGate(ca_root))
    while not stop.is_set():
        bus = await connect_until_stopped(nats_url, stop, "trust bundle", "node-agent")
        if bus is None:
            return
        announcer = ComponentAnnouncer(bus, "node-agent", endpoints or {}, supervisor=supervisor)
        retarget = asyncio.create_task(follower.follow_domain())
        try:
            await announcer.announce()
            async with Buckets(bus).trust.watch() as watch:
                async for event in watch:
                    if event.type is EventType.PUT and event.value is not None:
                        await follower.put(event.key, event.value)
        except BusError as exc:
            log.warning("trust bundle watch failed, reconnecting: %s", exc)
            await asyncio.sleep(1.0)
        finally:
            retarget.cancel()
            await announcer.withdraw()
            await bus.close()


class _BundleFollower:
    """The last bundle of every trust domain on the bus; the current domain's is served."""

    def __init__(self, trust_domain: TrustDomain, workloads: Workloads, gate: RootGate) -> None:
        self.trust_domain = trust_domain
        self.workloads = workloads
        self.gate = gate
        self.bundles: dict[str, status_pb2.TrustBundle] = {}
        self.retarget = asyncio.Event()
        trust_domain.on_change(self.retarget.set)

    async def put(self, key: str, bundle: status_pb2.TrustBundle) -> None:
        self.bundles[key] = bundle
        if key == str(self.trust_domain):
            await self.serve(bundle)

    async def follow_domain(self) -> None:
        """After each trust domain change, serve that domain's bundle (when the bus has one)."""
        while True:
            await self.retarget.wait()
            self.retarget.clear()
            domain = str(self.trust_domain)
            bundle = self.bundles.get(domain)
            if bundle is None:
                log.info("trust domain %s: no trust bundle on the bus yet, keeping the roots served", domain)
            else:
                await self.serve(bundle)

    async def serve(self, bundle: status_pb2.TrustBundle) -> None:
        try:
            roots = self.gate.check(list(bundle.root_certs_pem))
        except UntrustedRoot as exc:
            metrics.ROOTS_REFUSED.inc()
            log.error("refused trust bundle %s from the bus: %s", bundle.version, exc)
            return
        log.info("trust bundle %s of %s: %d roots", bundle.version, str(self.trust_domain), len(roots))
        await self.workloads.set_bus_roots(roots)
