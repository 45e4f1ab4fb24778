"""Live inputs of ``meshctl analyze``: a cluster through kubeconfig, or a running Galley.

A cluster is read as ``istioctl analyze`` reads it: every Istio kind meshplane knows (each at the
first version the API server serves; kinds whose CRD is absent are skipped), and the Kubernetes
kinds the analyzers use, in every namespace. Objects come back as the API server stores them
(camelCase JSON, with ``status``), so the analyzers read them exactly as they read files.

A running mesh is read through Galley's ``GET /debug/analyze`` on its debug address (Galley's
``--debug-addr``, local-only: ``kubectl port-forward`` reaches it in a cluster): the messages
Galley's analyzers found in the config it serves.
"""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from meshplane.shared.analysis import Message
from meshplane.shared.analysis.messages import BY_CODE
from meshplane.shared.config.kinds import ALL_KINDS

#: (group, version, kind, plural, namespaced) of the Kubernetes kinds the analyzers read.
KUBE_KINDS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("", "v1", "Namespace", "namespaces", False),
    ("", "v1", "Service", "services", True),
    ("", "v1", "Pod", "pods", True),
    ("", "v1", "Secret", "secrets", True),
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "Node", "nodes", False),
    ("apps", "v1", "Deployment", "deployments", True),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
    ),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways", True),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", True),
    ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes", True),
)
PAGE = 500


class LiveError(Exception):
    """The cluster or Galley could not be read; the message says which and why."""


@dataclass
class Cluster:
    """A kubeconfig context: its API client and its default namespace."""

    api: Any
    namespace: str

    def close(self) -> None:
        self.api.close()


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """An API client for the kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``)."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    # urllib3 logs each retry of an unreachable server as a warning; meshctl names the failure once
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        chosen = next((c for c in contexts if c["name"] == context), None) if context else active
        if chosen is None:
            raise LiveError(f"context {context!r} not found in the kubeconfig")
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=chosen["name"]
        )
    except (ConfigException, OSError) as exc:
        raise LiveError(f"cannot load the kubeconfig: {exc}") from exc
    namespace = str(chosen.get("context", {}).get("namespace") or "default")
    return Cluster(api, namespace)


def _path(group: str, version: str, plural: str) -> str:
    return f"/api/{version}/{plural}" if not group else f"/apis/{group}/{version}/{plural}"


class _Status(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


def _list(cluster: Cluster, path: str) -> list[dict[str, Any]]:
    """Every item at ``path``, page by page (a 410 on a page restarts the list); raises _Status."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query: list[tuple[str, str]] = [("limit", str(PAGE))] + ([("continue", token)] if token else [])
        method, url, headers, _body, _post = cluster.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = cluster.api.call_api(method, url, header_params=headers, _request_timeout=(5, 30))
        data = resp.read()
        if resp.status == 410 and token:
            items, token = [], ""
            continue
        if resp.status != 200:
            raise _Status(resp.status, data.decode(errors="replace"))
        body = json.loads(data)
        items += body.get("items") or []
        token = (body.get("metadata") or {}).get("continue") or ""
        if not token:
            return items


def _kinds() -> Iterator[tuple[str, tuple[str, ...], str, str]]:
    """(group, versions in preference order, kind, plural) of everything a live analysis reads."""
    for k in ALL_KINDS:
        if k.is_istio:
            yield k.group, k.versions, k.kind, k.plural
    for group, version, kind, plural, _ in KUBE_KINDS:
        yield group, (version,), kind, plural


def read_cluster(cluster: Cluster) -> list[tuple[dict[str, Any], str]]:
    """Every object the analyzers read, with an empty origin (istioctl names no file for them)."""
    from urllib3.exceptions import HTTPError

    items: list[tuple[dict[str, Any], str]] = []
    for group, versions, kind, plural in _kinds():
        for version in versions:
            try:
                listed = _list(cluster, _path(group, version, plural))
            except _Status as exc:
                if exc.status == 404:
                    continue  # not served at this version (or the CRD is not installed)
                if exc.status == 403:
                    print(
                        f"meshctl analyze: cannot list {plural}: forbidden; analyzing without them",
                        file=sys.stderr,
                    )
                    break
                raise LiveError(f"listing {plural}: {exc}") from exc
            except (HTTPError, OSError) as exc:
                raise LiveError(f"cannot reach the API server: {exc}") from exc
            api_version = f"{group}/{version}" if group else version
            items += [({**obj, "apiVersion": api_version, "kind": kind}, "") for obj in listed]
            break
    return items


def namespace_exists(items: list[tuple[dict[str, Any], str]], namespace: str) -> bool:
    return any(
        o.get("kind") == "Namespace" and (o.get("metadata") or {}).get("name") == namespace for o, _ in items
    )


def galley_messages(address: str, timeout: float = 10.0) -> list[Message]:
    """The messages of Galley's analyzers, from ``GET /debug/analyze`` at ``address`` (HOST:PORT or URL)."""
    base = address if "://" in address else f"http://{address}"
    url = base.rstrip("/") + "/debug/analyze"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http(s) only, see base)
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LiveError(f"cannot read {url}: {exc}") from exc
    raw = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise LiveError(f"{url}: expected an object with a 'messages' list")
    out: list[Message] = []
    for item in raw:
        mtype = BY_CODE.get(str(item.get("code"))) if isinstance(item, dict) else None
        if mtype is None or not isinstance(item, dict):
            raise LiveError(f"{url}: unexpected message {item!r}")
        out.append(
            Message(
                mtype,
                str(item.get("resource", "")),
                str(item.get("message", "")),
                str(item.get("origin", "")),
            )
        )
    return out
