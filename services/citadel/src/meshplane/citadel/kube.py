"""Kubernetes side (only when running in a cluster): TokenReview client, ``istio-ca-root-cert`` sync.

Every namespace gets ConfigMap ``istio-ca-root-cert`` with key ``root-cert.pem`` (all live roots)
and label ``istio.io/config: "true"``, re-checked every 30 s and at every CA change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meshplane.citadel.ca.authority import LocalAuthority

log = logging.getLogger(__name__)

CONFIGMAP_NAME = "istio-ca-root-cert"
CONFIGMAP_KEY = "root-cert.pem"
RESYNC_SECONDS = 30.0


def _load_config() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def authentication_api(api_client: Any = None) -> Any:
    from kubernetes import client

    return client.AuthenticationV1Api(api_client or _load_config())


def sync_root_configmaps(core: Any, roots_pem: str) -> int:
    """Create or update the root ConfigMap in every namespace; return how many were written."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    written = 0
    for ns in core.list_namespace().items:
        name = ns.metadata.name
        if ns.metadata.deletion_timestamp is not None or (ns.status and ns.status.phase == "Terminating"):
            continue  # nothing can be created there any more (403 NamespaceTerminating)
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=CONFIGMAP_NAME, labels={"istio.io/config": "true"}),
            data={CONFIGMAP_KEY: roots_pem},
        )
        try:
            current = core.read_namespaced_config_map(CONFIGMAP_NAME, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                core.create_namespaced_config_map(name, body)
            except ApiException as created:
                if created.status == 403 and "NamespaceTerminating" in str(created.body or ""):
                    continue  # began terminating since the list: skip it, not the namespaces after it
                raise
            written += 1
            continue
        if (current.data or {}).get(CONFIGMAP_KEY) != roots_pem:
            core.replace_namespaced_config_map(CONFIGMAP_NAME, name, body)
            written += 1
    return written


async def run_root_configmap_sync(authority: LocalAuthority, stop: asyncio.Event) -> None:
    from kubernetes import client

    core = client.CoreV1Api(await asyncio.to_thread(_load_config))
    changed = asyncio.Event()
    authority.on_change(lambda _bundle: changed.set())
    while not stop.is_set():
        changed.clear()
        try:
            roots = "".join(authority.bundle.roots_pem())
            n = await asyncio.to_thread(sync_root_configmaps, core, roots)
            if n:
                log.info("wrote %s in %d namespaces", CONFIGMAP_NAME, n)
        except Exception as exc:  # API errors of any shape: log and retry at the next resync
            log.error("syncing %s failed: %s", CONFIGMAP_NAME, exc)
        waits = [asyncio.create_task(changed.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, timeout=RESYNC_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
