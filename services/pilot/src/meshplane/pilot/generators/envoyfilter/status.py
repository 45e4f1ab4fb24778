"""What became of each EnvoyFilter's patches: Istio's ``pilot_envoy_filter_status`` gauge.

Labels as Istio's: ``name`` (``namespace/name``), ``patch`` (``cluster``, ``listener``,
``listenerfilter``, ``filterchain``, ``networkfilter``, ``httpfilter``, ``route``, ``vhost``) and
``result``:

- ``applied``: 1 if the patch changed at least one object in the current push context's
  generation, else 0 (Istio records the previous push's map at the start of each push, then
  starts a new one; meshplane starts a new map with each push context version);
- ``error``: how many times since start a patch of that filter and type was skipped because its
  value did not convert or its result would be rejected by Envoy. Istio records 1 and no
  ``name``; a count with the name answers "which filter" and ``> 0`` reads the same.

Istio exports it only with ``PILOT_ENVOY_FILTER_STATS=true``; meshplane always does, because a
skipped patch must be visible.
"""

from __future__ import annotations

import collections
import threading

from meshplane.shared.config.models.envoy_filter import ApplyTo

PATCH_TYPE: dict[ApplyTo, str] = {
    ApplyTo.LISTENER: "listener",
    ApplyTo.LISTENER_FILTER: "listenerfilter",
    ApplyTo.FILTER_CHAIN: "filterchain",
    ApplyTo.NETWORK_FILTER: "networkfilter",
    ApplyTo.HTTP_FILTER: "httpfilter",
    ApplyTo.ROUTE_CONFIGURATION: "route",
    ApplyTo.VIRTUAL_HOST: "vhost",
    ApplyTo.HTTP_ROUTE: "route",
    ApplyTo.CLUSTER: "cluster",
}


class FilterStatus:
    """Applied flags of the current push context and error counts since start (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._applied: dict[tuple[str, str], bool] = {}
        self.errors: collections.Counter[tuple[str, str]] = collections.Counter()

    def evaluated(self, version: str, source: str, apply_to: ApplyTo, applied: bool) -> None:
        key = (source, PATCH_TYPE.get(apply_to, str(apply_to).lower()))
        with self._lock:
            if version != self._version:
                self._version, self._applied = version, {}
            self._applied[key] = self._applied.get(key, False) or applied

    def error(self, source: str, apply_to: ApplyTo) -> None:
        with self._lock:
            self.errors[(source, PATCH_TYPE.get(apply_to, str(apply_to).lower()))] += 1

    def error_count(self, source: str) -> int:
        """Patches of filter ``namespace/name`` skipped since start (any patch type)."""
        with self._lock:
            return sum(n for (name, _), n in self.errors.items() if name == source)

    def samples(self) -> list[tuple[str, str, str, float]]:
        """(name, patch, result, value) rows, sorted."""
        with self._lock:
            rows = [(n, p, "applied", 1.0 if ok else 0.0) for (n, p), ok in self._applied.items()]
            rows += [(n, p, "error", float(c)) for (n, p), c in self.errors.items()]
        return sorted(rows)


#: The process's EnvoyFilter status (the patch stage runs in Pilot's one generation process).
STATUS = FilterStatus()
