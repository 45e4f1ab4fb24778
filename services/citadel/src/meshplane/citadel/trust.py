"""Publishing the trust bundle (every live root) to the bus under the trust domain's key.

The key follows the trust domain (:class:`~meshplane.citadel.trustdomain.TrustDomain`): after a
MeshConfig trustDomain change the bundle is published under the new domain too, which is the key
node agents following the same MeshConfig read. The previous key keeps its last bundle.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from google.protobuf.timestamp_pb2 import Timestamp

from meshplane.citadel.buslink import connect_until_stopped
from meshplane.citadel.ca.keycert import KeyCertBundle
from meshplane.citadel.trustdomain import TrustDomain
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, BusError
from meshplane.shared.components import ComponentAnnouncer
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger(__name__)


def trust_bundle(trust_domain: str, bundle: KeyCertBundle) -> status_pb2.TrustBundle:
    roots = bundle.roots_pem()
    version = hashlib.sha256("".join(roots).encode()).hexdigest()[:16]
    updated = Timestamp()
    updated.GetCurrentTime()
    return status_pb2.TrustBundle(
        trust_domain=trust_domain, root_certs_pem=roots, version=version, updated=updated
    )


class TrustPublisher:
    """Publishes the current bundle on start and after every change, retrying while the bus is away."""

    def __init__(self, nats_url: str, trust_domain: TrustDomain) -> None:
        self._url = nats_url
        self._trust_domain = trust_domain
        #: What ``meshctl version`` shows for this Citadel (set once the ports are known); the
        #: record is announced on the same bus connection while it is up.
        self.endpoints: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._bundle: KeyCertBundle | None = None
        self.published_version = ""
        trust_domain.on_change(self._changed.set)  # publish under the new domain's key

    def update(self, bundle: KeyCertBundle) -> None:
        self._bundle = bundle
        self._changed.set()

    async def run(self, stop: asyncio.Event, supervisor: TaskSupervisor | None = None) -> None:
        """Publish until ``stop``; a run restarted after a failure publishes the current bundle again."""
        if self._bundle is not None:
            self._changed.set()
        bus = await connect_until_stopped(self._url, stop, "trust bundle publishing", "citadel")
        if bus is None:
            await stop.wait()
            return
        announcer = ComponentAnnouncer(bus, "citadel", self.endpoints, supervisor=supervisor)
        try:
            await announcer.announce()
            trust = Buckets(bus).trust
            while not stop.is_set():
                if self._bundle is not None and self._changed.is_set():
                    self._changed.clear()
                    domain = str(self._trust_domain)
                    msg = trust_bundle(domain, self._bundle)
                    try:
                        await trust.put(domain, msg)
                        self.published_version = msg.version
                        roots = len(msg.root_certs_pem)
                        log.info("published trust bundle %s of %s (%d roots)", msg.version, domain, roots)
                    except BusError as exc:
                        log.warning("could not publish the trust bundle, will retry: %s", exc)
                        self._changed.set()
                        await _wait(stop, 1.0)
                        continue
                await _wait_any(stop, self._changed)
        finally:
            await announcer.withdraw()
            await bus.close()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


async def _wait_any(a: asyncio.Event, b: asyncio.Event) -> None:
    tasks = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
