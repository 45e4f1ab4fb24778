"""How ``meshctl up`` restarts a process that exited after start-up: kubelet's policy, made small.

As kubelet does, a process that exits after a healthy run is restarted at once; when it exits
again before it was healthy (ready) for 60 s, the next restart waits 1 s, then 2 s, doubling up
to 30 s. 60 healthy seconds reset the backoff. A process that exits again before it had its 60
healthy seconds, or that exits before it ever got ready again after a restart, is crash-looping:
that is reported once, with the tail of its log, until it has been healthy for 60 s again.
The policy takes the time as an argument, so tests drive it with a made-up clock.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
RESET_AFTER = 60.0


@dataclass
class RestartPolicy:
    initial: float = INITIAL_DELAY
    cap: float = MAX_DELAY
    reset_after: float = RESET_AFTER
    #: exits since the process was last healthy for ``reset_after`` seconds
    failures: int = 0
    #: a crash loop was reported and the process has not been healthy for ``reset_after`` since
    reported: bool = False
    _next: float = 0.0

    def exited(self, now: float, healthy_since: float | None) -> float:
        """The delay before the next start, for a process that exited at ``now``.

        ``healthy_since`` is when it last became ready (None: it never got ready since its start).
        """
        if healthy_since is not None and now - healthy_since >= self.reset_after:
            self.failures, self.reported, self._next = 0, False, 0.0
        delay = self._next
        self._next = min(self.cap, delay * 2) if delay else self.initial
        self.failures += 1
        return delay

    def should_report(self, became_ready: bool) -> bool:
        """True once per crash loop: a second exit without 60 healthy seconds, or no ready at all."""
        if self.reported or (self.failures < 2 and became_ready):
            return False
        self.reported = True
        return True
