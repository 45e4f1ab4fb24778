"""Pods on this node from the Kubernetes API, through the shared reflector (list, then watch).

:func:`pod_reflector` makes a :class:`meshplane.shared.reflector.Reflector` for the pods bound to
this node (``spec.nodeName``) whose changes go into the :class:`PodCache`; the agent runs it as a
supervised task. The cache counts as synced once the first list is in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from meshplane.cni.agent.podcache import PodCache, PodsFileError, pod_from_api
from meshplane.shared.reflector import Reflector, ResourceDef, Sink, WatchEvent

log = logging.getLogger(__name__)

PODS = ResourceDef("", "v1", "Pod", "pods")


def pod_sink(cache: PodCache) -> Sink:
    """Apply a reflector's pod changes to ``cache``; a pod it cannot read is logged and skipped."""

    async def sink(changes: Sequence[WatchEvent], listed: bool) -> None:
        for change in changes:
            try:
                pod = pod_from_api(change.obj)
            except PodsFileError as exc:
                log.warning("ignoring pod %s from the API: %s", change.key, exc)
                continue
            if change.type == "DELETED":
                await cache.remove(pod.namespace, pod.name)
            else:
                await cache.upsert(pod)
        if listed:
            cache.synced.set()

    return sink


def pod_reflector(api: Any, cache: PodCache, node: str) -> Reflector:
    """The list/watch of the pods on ``node`` (every pod when ``node`` is empty) into ``cache``."""
    selector = f"spec.nodeName={node}" if node else ""
    return Reflector(api, PODS, pod_sink(cache), field_selector=selector)


def api_client(kubeconfig: str | None) -> Any:
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig``, else the in-cluster config."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)
