"""``meshctl proxy-status`` against a live cluster: every Pilot pod's ``/debug/syncz``, as istioctl.

istioctl reaches istiod through the API server; so does meshctl. The Pilot pods are found by
their label (``app.kubernetes.io/name=pilot``, as ``k8s/base/pilot`` deploys them) in the
control-plane namespace, and each Running one's ``/debug/syncz`` is read through the API
server's pod proxy (``/api/v1/namespaces/NS/pods/NAME:15014/proxy/debug/syncz``). Pilot serves
syncz, read-only, on its monitoring port 15014 for this: the pod proxy reaches the pod's address,
never its loopback, where every other ``/debug`` endpoint listens (``--debug-addr``). Nothing but
the kubeconfig (and RBAC ``get pods/proxy``) is needed: no port-forward, no route to pod
addresses. ``-o json`` prints the syncz entries as Pilot serves them, each with the ``pilot`` pod
it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshplane.ctl.analyzelive import LiveError, connect

PILOT_SELECTOR = "app.kubernetes.io/name=pilot"
#: Pilot's monitoring port, where /debug/syncz is served (pilot.debug.listeners.MONITORING_DEBUG)
DEBUG_PORT = 15014
#: syncz column prefix of each of istioctl's columns
COLUMNS = {"CDS": "cluster", "LDS": "listener", "EDS": "endpoint", "RDS": "route"}


@dataclass(frozen=True)
class SynczRow:
    """One proxy's sync state as one Pilot pod reports it."""

    proxy_id: str
    pilot: str
    words: tuple[str, ...]  # in COLUMNS' order
    version: str
    raw: dict[str, Any]


def _row(pilot: str, raw: Any) -> SynczRow:
    if not isinstance(raw, dict) or not isinstance(raw.get("proxy"), str):
        raise LiveError(f"Pilot pod {pilot}: unexpected /debug/syncz entry {raw!r:.200}")
    words = tuple(str(raw.get(f"{key}_status") or "NOT SENT") for key in COLUMNS.values())
    return SynczRow(raw["proxy"], pilot, words, str(raw.get("proxy_version") or ""), raw)


def _syncz(core: Any, name: str, namespace: str) -> list[SynczRow]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        resp = core.connect_get_namespaced_pod_proxy_with_path(
            f"{name}:{DEBUG_PORT}", namespace, "debug/syncz", _preload_content=False, _request_timeout=(5, 15)
        )
        data = json.loads(resp.data)
    except ApiException as exc:
        raw = exc.body or ""
        body = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip()
        raise LiveError(
            f"cannot read /debug/syncz of Pilot pod {namespace}/{name}: HTTP {exc.status} {body[:200]}"
        ) from exc
    except (HTTPError, OSError) as exc:
        raise LiveError(f"cannot reach the API server: {exc}") from exc
    except ValueError as exc:
        raise LiveError(f"Pilot pod {namespace}/{name}: /debug/syncz is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise LiveError(f"Pilot pod {namespace}/{name}: /debug/syncz: expected a list")
    return [_row(name, raw) for raw in data]


def _pilot_pods(core: Any, namespace: str) -> list[str]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        pods = core.list_namespaced_pod(namespace, label_selector=PILOT_SELECTOR, _request_timeout=(5, 15))
    except ApiException as exc:
        raise LiveError(f"cannot list the Pilot pods in namespace {namespace}: HTTP {exc.status}") from exc
    except (HTTPError, OSError) as exc:
        raise LiveError(f"cannot reach the API server: {exc}") from exc
    running = [p.metadata.name for p in pods.items if p.status is not None and p.status.phase == "Running"]
    if not running:
        raise LiveError(f"no running Pilot pods ({PILOT_SELECTOR}) in namespace {namespace}")
    return sorted(running)


def read_cluster_status(kubeconfig: str | None, context: str | None, namespace: str) -> list[SynczRow]:
    """Every proxy's row from every running Pilot pod in ``namespace``; raises LiveError."""
    from kubernetes import client

    cluster = connect(kubeconfig, context)
    try:
        core: Any = client.CoreV1Api(cluster.api)
        rows: list[SynczRow] = []
        for pod in _pilot_pods(core, namespace):
            rows += _syncz(core, pod, namespace)
        return rows
    finally:
        cluster.close()
