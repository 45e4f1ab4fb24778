"""Kubernetes side (only when running in a cluster): the TokenReview client, the CA Secret, and
the ``istio-ca-root-cert`` ConfigMap in every namespace.

* The self-signed root lives in Secret ``istio-ca-secret`` (type ``istio.io/ca-root``) in
  Citadel's namespace, as in Istio: ``ca-cert.pem`` and ``ca-key.pem`` carry the root; the keys
  ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem`` are present and empty. At start the Secret
  wins over ``--ca-dir``; when there is none, the root in ``--ca-dir`` (created if missing) is
  written to it. Of two replicas starting at once, the one whose create loses takes the winner's.
  A root rotation updates the Secret.
* Every namespace gets ConfigMap ``istio-ca-root-cert`` with key ``root-cert.pem`` (all live roots)
  and label ``istio.io/config: "true"``: at every CA change, at every namespace added (a watch),
  and every 30 s.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.errors import CAMaterialError
from meshplane.citadel.ca.keycert import (
    CA_CERT,
    CA_KEY,
    CERT_CHAIN,
    ROOT_CERT,
    KeyCertBundle,
    has_material,
    key_pem,
    to_pem,
    write_private,
    write_public,
)
from meshplane.shared.reflector import Reflector, ResourceDef, WatchEvent

log = logging.getLogger(__name__)

CONFIGMAP_NAME = "istio-ca-root-cert"
CONFIGMAP_KEY = "root-cert.pem"
RESYNC_SECONDS = 30.0
CA_SECRET_NAME = "istio-ca-secret"
CA_SECRET_TYPE = "istio.io/ca-root"
#: the Secret's keys (Istio's); only the first two are filled for a self-signed root
CA_SECRET_KEYS = (CA_CERT, CA_KEY, CERT_CHAIN, "key.pem", ROOT_CERT)
NAMESPACES = ResourceDef("", "v1", "Namespace", "namespaces")


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


def core_api(api_client: Any = None) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client or _load_config())


def startup_api_client() -> Any:
    """The ``ApiClient`` for the start, where a missing configuration is a :class:`CAMaterialError`."""
    from kubernetes.config import ConfigException

    try:
        return _load_config()
    except (ConfigException, OSError) as exc:
        raise CAMaterialError(f"Kubernetes mode needs an in-cluster config or a kubeconfig: {exc}") from exc


def startup_core_api() -> Any:
    """:func:`core_api` for the start (see :func:`startup_api_client`)."""
    return core_api(startup_api_client())


def _secret_body(cert_pem: str, ca_key_pem: bytes) -> Any:
    from kubernetes import client

    values = dict.fromkeys(CA_SECRET_KEYS, "")
    values[CA_CERT] = cert_pem
    values[CA_KEY] = ca_key_pem.decode()
    data: dict[str, bytes | str] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return client.V1Secret(metadata=client.V1ObjectMeta(name=CA_SECRET_NAME), type=CA_SECRET_TYPE, data=data)


def _decode(secret: Any) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _write_ca_dir(ca_dir: Path, data: dict[str, str]) -> None:
    if not data.get(CA_CERT) or not data.get(CA_KEY):
        raise CAMaterialError(f"Secret {CA_SECRET_NAME} has no {CA_CERT} or {CA_KEY}")
    ca_dir.mkdir(parents=True, exist_ok=True)
    write_private(ca_dir / CA_KEY, data[CA_KEY].encode())
    write_public(ca_dir / CA_CERT, data[CA_CERT])
    write_public(ca_dir / ROOT_CERT, data.get(ROOT_CERT) or data[CA_CERT])
    if data.get(CERT_CHAIN):
        write_public(ca_dir / CERT_CHAIN, data[CERT_CHAIN])


def restore_or_persist_ca(core: Any, namespace: str, ca_dir: Path, create: Callable[[], None]) -> str:
    """Make ``ca_dir`` hold the root of Secret ``istio-ca-secret``, creating both if there is none.

    ``create`` makes a self-signed root in ``ca_dir``. Returns what happened: ``"restored"`` or
    ``"created"``. API errors become :class:`CAMaterialError` naming the Secret.
    """
    from kubernetes.client.exceptions import ApiException

    where = f"Secret {namespace}/{CA_SECRET_NAME}"
    try:
        try:
            _write_ca_dir(ca_dir, _decode(core.read_namespaced_secret(CA_SECRET_NAME, namespace)))
            return "restored"
        except ApiException as exc:
            if exc.status != 404:
                raise
        if not has_material(ca_dir):
            create()
        body = _secret_body((ca_dir / CA_CERT).read_text(), (ca_dir / CA_KEY).read_bytes())
        try:
            core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Another replica created it first: use its root, so every replica signs with one root.
            _write_ca_dir(ca_dir, _decode(core.read_namespaced_secret(CA_SECRET_NAME, namespace)))
            return "restored"
        return "created"
    except CAMaterialError:
        raise
    except Exception as exc:  # ApiException, urllib3 errors: the API server's answer or its absence
        raise CAMaterialError(f"{where}: {exc}") from exc


def update_ca_secret(core: Any, namespace: str, bundle: KeyCertBundle) -> bool:
    """Put the bundle's root in the Secret if it holds another; return whether it was written."""
    current = _decode(core.read_namespaced_secret(CA_SECRET_NAME, namespace))
    cert_pem = to_pem(bundle.cert)
    if current.get(CA_CERT) == cert_pem:
        return False
    body = _secret_body(cert_pem, key_pem(bundle.key))
    core.replace_namespaced_secret(CA_SECRET_NAME, namespace, body)
    return True


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


async def run_namespace_watch(changed: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``changed`` at every namespace added (the shared list/watch), until ``stop``."""
    api = await asyncio.to_thread(_load_config)

    async def sink(changes: Sequence[WatchEvent], listed: bool) -> None:
        if any(change.type == "ADDED" for change in changes):
            changed.set()

    await Reflector(api, NAMESPACES, sink).run(stop)


async def run_root_configmap_sync(
    authority: LocalAuthority,
    stop: asyncio.Event,
    changed: asyncio.Event,
    secret_namespace: str | None = None,
) -> None:
    """Keep the ConfigMaps (and, with ``secret_namespace``, the CA Secret) in step with the CA.

    ``changed`` is set by whoever sees a reason to sync now (a CA change, a new namespace).
    """
    core = core_api(await asyncio.to_thread(_load_config))
    authority.on_change(lambda _bundle: changed.set())
    while not stop.is_set():
        changed.clear()
        try:
            if secret_namespace is not None and await asyncio.to_thread(
                update_ca_secret, core, secret_namespace, authority.bundle
            ):
                log.info("wrote the new root to Secret %s/%s", secret_namespace, CA_SECRET_NAME)
            roots = "".join(authority.bundle.roots_pem())
            n = await asyncio.to_thread(sync_root_configmaps, core, roots)
            if n:
                log.info("wrote %s in %d namespaces", CONFIGMAP_NAME, n)
        except Exception as exc:  # API errors of any shape: log and retry at the next resync
            log.exception("syncing %s failed: %s", CONFIGMAP_NAME, exc)
        waits = [asyncio.create_task(changed.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, timeout=RESYNC_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
