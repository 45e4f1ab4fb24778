"""The ``istio`` ConfigMap of Galley's namespace (key ``mesh``), read through the API in Kubernetes mode.

Istio's istiod reads its MeshConfig from the ConfigMap ``istio`` (``istio-<rev>`` for a revision)
of its own namespace; Galley does the same with a :class:`~meshplane.shared.reflector.Reflector`
narrowed to that one object (``metadata.name`` field selector, so RBAC can grant it by name), so
an edit reaches the bus as soon as the API has it, without kubelet's volume sync delay. Each valid
version is published as the file source does (:class:`~meshplane.galley.sources.meshfile.MeshConfigSink`);
one that does not parse is refused in the log, naming the field, and the last valid one stays. A
ConfigMap without the ``mesh`` key is refused too. An absent (or deleted) ConfigMap means Istio's
defaults, as for istiod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from meshplane.galley.sources.meshfile import MeshConfigSink, OnChange
from meshplane.shared.reflector import ApiClientLike, Reflector, ResourceDef, WatchEvent

CONFIGMAPS = ResourceDef("", "v1", "ConfigMap", "configmaps")
KEY = "mesh"


class MeshConfigMap(MeshConfigSink):
    def __init__(self, api: ApiClientLike, namespace: str, name: str, on_change: OnChange) -> None:
        super().__init__(on_change, origin_kind="kubernetes")
        self.namespace, self.name = namespace, name
        self.where = f"ConfigMap {namespace}/{name}"
        self.reflector = Reflector(
            api, CONFIGMAPS, self._sink, namespace=namespace, field_selector=f"metadata.name={name}"
        )
        self.synced = asyncio.Event()
        #: the ConfigMap as the API last showed it (None: absent)
        self._obj: dict[str, Any] | None = None

    async def _sink(self, changes: Sequence[WatchEvent], listed: bool) -> None:
        # called before the reflector's store takes the changes: follow them here
        for change in changes:
            self._obj = None if change.type == "DELETED" else change.obj
        if changes or listed:
            self.refresh()
        if listed:
            self.synced.set()

    def refresh(self) -> bool:
        """Take the ConfigMap as the reflector holds it now; True when a new valid version was handed on."""
        obj = self._obj
        if obj is None:
            return self.offer("{}\n", f"{self.where} (absent: Istio's defaults)")
        text = (obj.get("data") or {}).get(KEY)
        if not isinstance(text, str):
            self.forget()  # the key coming back with the last valid text is taken again
            return self.refuse(f"{self.where}: no key {KEY} (the MeshConfig YAML) in data")
        return self.offer(text, f"{self.where} data.{KEY}")

    async def run(self, stop: asyncio.Event) -> None:
        await self.reflector.run(stop)

    async def wait_synced(self, stop: asyncio.Event) -> None:
        """Return once the ConfigMap was listed once (or on stop)."""
        synced = asyncio.ensure_future(self.synced.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
        synced.cancel()
        stopped.cancel()
