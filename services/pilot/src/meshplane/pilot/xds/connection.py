"""Per-connection xDS state: subscriptions, nonces, ACK/NACK per type, what Delta has sent."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass

from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_request import PushRequest
from meshplane.pilot.model.resources import Part

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PushTrace:
    """A traced push's response awaiting the proxy's answer (see :mod:`.tracing`)."""

    nonce: str
    version: str
    sent_ns: int
    traces: tuple[Mapping[str, str], ...]


@dataclass
class Watched:
    """One type a proxy watches."""

    type_url: str
    names: frozenset[str] = frozenset()
    #: SotW: the wire bytes of ``names`` as the proxy last sent them (shared with equal subscriptions).
    names_key: bytes = b""
    wildcard: bool = True
    nonce_sent: str = ""
    nonce_acked: str = ""
    version_sent: str = ""
    version_acked: str = ""
    last_nack: str = ""
    nacks: int = 0
    #: Delta: what the proxy holds after our last send — the shared parts it was sent, or
    #: name → version (from ``initial_resource_versions`` when it reconnects).
    held: tuple[Part, ...] | dict[str, str] | None = None
    #: Time the oldest unacknowledged push started (for convergence time).
    pending_since: float | None = None
    #: The last response sent by a traced push, until the proxy answers it.
    push_trace: PushTrace | None = None


class Connection:
    """One ADS stream from one proxy; all sends happen under ``lock`` in order."""

    def __init__(self, proxy: Proxy, peer: str, delta: bool) -> None:
        self.id = f"{proxy.id}-{next(_ids)}"
        self.proxy = proxy
        self.peer = peer
        self.delta = delta
        self.connected_at = time.time()
        self.watched: dict[str, Watched] = {}
        self.lock = asyncio.Lock()
        self.initialized = asyncio.Event()
        #: Bounded: a push waits while the stream is still writing, so memory held in responses
        #: stays at (push throttle x 2) instead of growing with the number of proxies.
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
        self.pending: PushRequest | None = None
        #: A push is sending this proxy's types: an ACK of the first ones is not yet convergence.
        self.pushing = False
        self.closed = False
        #: When this proxy's status was last written to the bus (monotonic).
        self.status_written = 0.0
        #: When the status publisher first saw this proxy out of sync (monotonic; None: in sync).
        self.unsynced_seen: float | None = None
        #: Types with a response the proxy has not answered yet: ``synced`` in O(1) for the ACK
        #: path. Kept by ``sent`` and ``answered``, the only writers of the nonces.
        self._unanswered: set[str] = set()

    async def send(self, data: bytes) -> bool:
        """Queue one serialized response (waits for room); False once the stream has closed."""
        if self.closed:
            return False
        await self.outbox.put(data)
        return True

    def drain(self) -> None:
        """After the stream ended: release any sender waiting for room."""
        while not self.outbox.empty():
            self.outbox.get_nowait()

    def watch(self, type_url: str) -> Watched:
        w = self.watched.get(type_url)
        if w is None:
            w = Watched(type_url)
            self.watched[type_url] = w
        return w

    def sent(self, w: Watched, nonce: str, version: str) -> None:
        """A response of ``w``'s type went out with ``nonce``."""
        w.nonce_sent = nonce
        w.version_sent = version
        self._track(w)

    def answered(self, w: Watched, nonce: str) -> None:
        """The proxy answered ``nonce`` of ``w``'s type (an ACK, or a NACK)."""
        w.nonce_acked = nonce
        self._track(w)

    def _track(self, w: Watched) -> None:
        if w.nonce_sent and w.nonce_sent != w.nonce_acked:
            self._unanswered.add(w.type_url)
        else:
            self._unanswered.discard(w.type_url)

    def synced(self) -> bool:
        """Every response sent has been answered (ACK or NACK)."""
        return not self._unanswered
