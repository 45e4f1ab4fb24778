"""Stream tokens the node agent refuses without asking Citadel again, each with its own backoff.

A per-node agent takes a workload token from every SDS stream. A token that is not a JWT is
refused at once; one Citadel refused (``UNAUTHENTICATED``) is remembered by its SHA-256, and
every stream presenting it is refused without a CSR until its backoff passes (1 s, doubling per
refusal, at most 60 s). Only then may one more CSR try it. So garbage tokens cost Citadel no CSR
and a token it rejects costs one CSR per backoff period, however many streams present it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
#: entries kept at most (a flood of distinct tokens cannot grow the table without bound)
MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Refusal:
    until: float
    delay: float
    reason: str


class RefusedTokens:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Refusal] = {}

    def refuse(self, key: str, reason: str) -> float:
        """Remember that the token ``key`` was refused; return the seconds until it may try again."""
        now = self._clock()
        previous = self._entries.pop(key, None)
        delay = BACKOFF_INITIAL if previous is None else min(previous.delay * 2, BACKOFF_MAX)
        if len(self._entries) >= MAX_ENTRIES:
            # forget those whose backoff ran out long ago, then the oldest
            self._entries = {k: v for k, v in self._entries.items() if v.until + BACKOFF_MAX > now}
            while len(self._entries) >= MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = _Refusal(now + delay, delay, reason)
        return delay

    def refused(self, key: str) -> str | None:
        """Why ``key`` is still refused (with the seconds left), or None when it may try."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = entry.until - self._clock()
        if left <= 0:
            return None
        return f"{entry.reason}; refused for another {left:.1f}s"
