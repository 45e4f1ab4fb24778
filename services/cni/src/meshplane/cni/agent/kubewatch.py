"""Pods on this node from the Kubernetes API: list, then watch, with the official client.

The client is asked for raw JSON (``_preload_content=False``), so the same functions handle a
live response and a recorded one: :func:`apply_list` for a PodList body, :func:`apply_watch_line`
for one line of a watch stream.  The blocking client runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from meshplane.cni.agent.podcache import PodCache, apply_watch_event, pod_from_api

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300


async def apply_list(cache: PodCache, body: bytes) -> str:
    """Replace the cache with a PodList response; returns its resourceVersion."""
    data = json.loads(body)
    await cache.replace_all(pod_from_api(item) for item in data.get("items") or [])
    return str((data.get("metadata") or {}).get("resourceVersion") or "")


async def apply_watch_line(cache: PodCache, line: bytes) -> str | None:
    """Apply one watch-stream line; returns the new resourceVersion (``None`` for ERROR/410)."""
    event = json.loads(line)
    if event.get("type") == "ERROR":
        log.warning("pod watch error: %s", (event.get("object") or {}).get("message"))
        return None
    await apply_watch_event(cache, event)
    return str(((event.get("object") or {}).get("metadata") or {}).get("resourceVersion") or "")


def _pump(response: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """Thread: feed the watch stream's lines to the loop, then ``None`` at its end."""
    from kubernetes.watch.watch import iter_resp_lines

    try:
        for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
            if line.strip():
                asyncio.run_coroutine_threadsafe(queue.put(line.encode()), loop).result()
    finally:
        asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()


async def run_kube_source(cache: PodCache, node: str, kubeconfig: str | None) -> None:
    """List and watch this node's pods until cancelled; re-list after errors."""
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()
    selector = f"spec.nodeName={node}" if node else None
    loop = asyncio.get_running_loop()
    while True:
        try:
            listing: Any = await asyncio.to_thread(
                api.list_pod_for_all_namespaces, field_selector=selector, _preload_content=False
            )
            version: str | None = await apply_list(cache, listing.data)
            while version is not None:
                stream: Any = await asyncio.to_thread(
                    api.list_pod_for_all_namespaces,
                    field_selector=selector,
                    watch=True,
                    resource_version=version,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    _preload_content=False,
                )
                queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)
                pump = asyncio.create_task(asyncio.to_thread(_pump, stream, loop, queue), name="pod-watch")
                try:
                    while (line := await queue.get()) is not None:
                        version = await apply_watch_line(cache, line)
                        if version is None:
                            break
                finally:
                    stream.release_conn()
                    pump.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pod list/watch failed, retrying: %s", exc)
            await asyncio.sleep(2.0)
