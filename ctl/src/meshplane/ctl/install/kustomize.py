"""Render a kustomization in k8s/ the way ``kubectl kustomize`` does, for the features used here.

The manifests in k8s/ use a deliberately small part of kustomize: ``resources`` (YAML files and
other kustomization directories), ``namespace``, ``labels`` (``pairs`` with
``includeSelectors: false``) and ``patches`` given as inline JSON 6902 operations with a
``target`` of kind and name. This module applies exactly those and refuses any other field, so
the tests in tests/deploy validate what a cluster would receive, and ``meshctl install`` /
``meshctl manifest generate`` render the same files. ``python k8s/render.py k8s/overlays/prod``
prints the objects as YAML; each object remembers the file it came from (:func:`render_sources`),
which is how the installer tells components apart.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KNOWN_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "labels", "patches"})

#: Kinds with no namespace among those kustomize's namespace transformer knows.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "PriorityClass",
        "StorageClass",
        "PersistentVolume",
        "APIService",
    }
)


class KustomizeError(Exception):
    """A kustomization this renderer cannot apply faithfully; the message names file and field."""


def render(directory: Path) -> list[Manifest]:
    """All objects the kustomization in ``directory`` produces, in resource order."""
    return [obj for _, obj in render_sources(directory)]


def render_sources(directory: Path) -> list[tuple[Path, Manifest]]:
    """As :func:`render`, each object with the YAML file it was read from."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise KustomizeError(f"{path}: not a mapping")
    unknown = sorted(set(spec) - KNOWN_FIELDS)
    if unknown:
        raise KustomizeError(f"{path}: unsupported kustomization field(s) {', '.join(unknown)}")

    sourced: list[tuple[Path, Manifest]] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            sourced.extend(render_sources(target))
        elif target.is_file():
            sourced.extend((target, doc) for doc in _load_documents(target))
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    objects = [obj for _, obj in sourced]

    for index, patch in enumerate(spec.get("patches", [])):
        _apply_patch(objects, patch, f"{path}: patches[{index}]")
    for index, label_set in enumerate(spec.get("labels", [])):
        _apply_labels(objects, label_set, f"{path}: labels[{index}]")
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    _check_unique(objects, path)
    return sourced


def _load_documents(path: Path) -> list[Manifest]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document needs apiVersion and kind")
    return docs


def _check_unique(objects: list[Manifest], path: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        meta = obj.get("metadata", {})
        key = (obj["kind"], meta.get("namespace", ""), meta.get("name", ""))
        if key in seen:
            raise KustomizeError(f"{path}: duplicate {key[0]} {key[2]!r}")
        seen.add(key)


def _apply_labels(objects: list[Manifest], label_set: Any, where: str) -> None:
    if not isinstance(label_set, dict) or set(label_set) - {"pairs", "includeSelectors"}:
        raise KustomizeError(f"{where}: only 'pairs' and 'includeSelectors: false' are supported")
    if label_set.get("includeSelectors", False):
        raise KustomizeError(f"{where}: includeSelectors: true is not supported")
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])


def _apply_patch(objects: list[Manifest], patch: Any, where: str) -> None:
    if not isinstance(patch, dict) or set(patch) != {"target", "patch"}:
        raise KustomizeError(f"{where}: a patch needs exactly 'target' and an inline 'patch'")
    target = patch["target"]
    if not isinstance(target, dict) or set(target) - {"kind", "name"}:
        raise KustomizeError(f"{where}: target supports only kind and name")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{where}: only JSON 6902 patches (a list of operations) are supported")
    matches = [
        obj
        for obj in objects
        if obj["kind"] == target.get("kind", obj["kind"])
        and obj.get("metadata", {}).get("name") == target.get("name", obj.get("metadata", {}).get("name"))
    ]
    if not matches:
        raise KustomizeError(f"{where}: target {target} matches no resource")
    for obj in matches:
        for number, operation in enumerate(operations):
            _apply_operation(obj, operation, f"{where} operation {number}")


def _apply_operation(obj: Manifest, operation: Any, where: str) -> None:
    """One JSON 6902 add / replace / remove on ``obj`` in place."""
    op = operation.get("op") if isinstance(operation, dict) else None
    if op not in {"add", "replace", "remove"}:
        raise KustomizeError(f"{where}: op must be add, replace or remove, not {op!r}")
    tokens = _pointer(operation.get("path", ""), where)
    parent: Any = obj
    for token in tokens[:-1]:
        parent = _child(parent, token, where)
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add" and last == "-":
            parent.append(value)
            return
        index = _index(parent, last, where, allow_end=op == "add")
        if op == "add":
            parent.insert(index, value)
        elif op == "replace":
            parent[index] = value
        else:
            del parent[index]
    elif isinstance(parent, dict):
        if op != "add" and last not in parent:
            raise KustomizeError(f"{where}: path {operation['path']} does not exist")
        if op == "remove":
            del parent[last]
        else:
            parent[last] = value
    else:
        raise KustomizeError(f"{where}: path {operation['path']} goes through a scalar")


def _pointer(path: str, where: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"{where}: path {path!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _child(node: Any, token: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, token, where, allow_end=False)]
    if isinstance(node, dict) and token in node:
        return node[token]
    raise KustomizeError(f"{where}: no {token!r} on the path")


def _index(items: list[Any], token: str, where: str, *, allow_end: bool) -> int:
    limit = len(items) + (1 if allow_end else 0)
    if not token.isdigit() or int(token) >= limit:
        raise KustomizeError(f"{where}: index {token!r} out of range")
    return int(token)
