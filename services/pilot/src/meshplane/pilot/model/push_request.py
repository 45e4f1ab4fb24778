"""What changed, merged across events until the debouncer lets a push through."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Most trace contexts one request carries (the first is the parent, the rest become links).
MAX_TRACES = 32


@dataclass
class PushRequest:
    """A pending push. ``full`` rebuilds config; otherwise only EDS for ``eds_hosts`` is sent."""

    full: bool = False
    kinds: frozenset[str] = frozenset()
    services_changed: bool = False
    eds_hosts: frozenset[str] = frozenset()
    reason: tuple[str, ...] = ()
    start: float = field(default_factory=time.monotonic)
    #: Trace contexts (propagation headers) of the changes merged into this request, oldest first.
    traces: tuple[Mapping[str, str], ...] = ()

    def merge(self, other: PushRequest) -> PushRequest:
        return PushRequest(
            full=self.full or other.full,
            kinds=self.kinds | other.kinds,
            services_changed=self.services_changed or other.services_changed,
            eds_hosts=self.eds_hosts | other.eds_hosts,
            reason=tuple(dict.fromkeys(self.reason + other.reason)),
            start=min(self.start, other.start),
            traces=(self.traces + other.traces)[:MAX_TRACES],
        )
