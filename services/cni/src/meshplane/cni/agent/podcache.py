"""The agent's view of the pods on its node: fed from a file locally or a Kubernetes watch.

Pods arrive in the Kubernetes API's JSON shape (a Pod, a PodList, or a list/YAML stream of them);
:func:`pod_from_api` projects one onto :class:`PodInfo`.  Lookups can wait briefly for a pod the
agent has not seen yet (the plugin's ADD can race the watch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from meshplane.cni.rules.pods import PodInfo

log = logging.getLogger(__name__)


class PodsFileError(ValueError):
    """The pods file cannot be read as Kubernetes Pods."""


def _names(containers: object) -> tuple[str, ...]:
    if not isinstance(containers, list):
        return ()
    return tuple(str(c.get("name", "")) for c in containers if isinstance(c, dict))


def pod_from_api(obj: Mapping[str, Any]) -> PodInfo:
    """Project a Pod in the Kubernetes API's JSON shape onto :class:`PodInfo`."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(meta, dict) or not meta.get("name"):
        raise PodsFileError("pod has no metadata.name")
    ips = [p.get("ip", "") for p in status.get("podIPs") or [] if isinstance(p, dict)]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return PodInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        uid=str(meta.get("uid") or ""),
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        containers=_names(spec.get("containers")),
        init_containers=_names(spec.get("initContainers")),
        ips=tuple(str(ip) for ip in ips if ip),
        node=str(spec.get("nodeName") or ""),
    )


def load_pods_file(path: Path) -> list[PodInfo]:
    """Read Pods from a YAML/JSON file: Pod documents, a PodList (``items``) or a list."""
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise PodsFileError(f"{path}: {exc}") from None
    objects: list[Any] = []
    for doc in documents:
        if doc is None:
            continue
        if isinstance(doc, list):
            objects += doc
        elif isinstance(doc, dict) and isinstance(doc.get("items"), list):
            objects += doc["items"]
        else:
            objects.append(doc)
    pods = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise PodsFileError(f"{path}: item {index} is not a Pod object")
        try:
            pods.append(pod_from_api(obj))
        except PodsFileError as exc:
            raise PodsFileError(f"{path}: item {index}: {exc}") from None
    return pods


class PodCache:
    """Pods by (namespace, name); single event loop, no locking needed."""

    def __init__(self, node: str = "") -> None:
        self.node = node
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self._changed = asyncio.Condition()
        self.synced = asyncio.Event()
        #: Requests waiting in :meth:`wait_for` for a pod that is not known yet.
        self.waiting = 0

    def _mine(self, pod: PodInfo) -> bool:
        return not self.node or not pod.node or pod.node == self.node

    def get(self, namespace: str, name: str) -> PodInfo | None:
        """The pod, if known."""
        return self._pods.get((namespace, name))

    def pods(self) -> list[PodInfo]:
        """Every pod on this node."""
        return list(self._pods.values())

    async def wait_for(self, namespace: str, name: str, timeout: float) -> PodInfo | None:
        """The pod, waiting up to ``timeout`` seconds for it to show up."""
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: (namespace, name) in self._pods)
        except TimeoutError:
            return None
        finally:
            self.waiting -= 1
        return self._pods.get((namespace, name))

    async def replace_all(self, pods: Iterable[PodInfo]) -> None:
        """Swap in a full listing (file reload, watch re-list)."""
        async with self._changed:
            self._pods = {(p.namespace, p.name): p for p in pods if self._mine(p)}
            self._changed.notify_all()
        self.synced.set()

    async def upsert(self, pod: PodInfo) -> None:
        """Add or update one pod."""
        async with self._changed:
            if self._mine(pod):
                self._pods[(pod.namespace, pod.name)] = pod
            else:
                self._pods.pop((pod.namespace, pod.name), None)
            self._changed.notify_all()

    async def remove(self, namespace: str, name: str) -> None:
        """Forget one pod."""
        async with self._changed:
            self._pods.pop((namespace, name), None)
            self._changed.notify_all()


async def apply_watch_event(cache: PodCache, event: Mapping[str, Any]) -> None:
    """Apply one Kubernetes watch event (``{"type": ADDED|MODIFIED|DELETED, "object": Pod}``)."""
    kind, obj = event.get("type"), event.get("object")
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        return  # BOOKMARK and friends carry no pod
    if not isinstance(obj, dict):
        log.warning("ignoring watch event %s without an object", kind)
        return
    pod = pod_from_api(obj)
    if kind == "DELETED":
        await cache.remove(pod.namespace, pod.name)
    else:
        await cache.upsert(pod)
