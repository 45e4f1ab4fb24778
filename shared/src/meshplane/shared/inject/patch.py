"""The admission answer's ``patch``: an RFC 6902 JSON Patch from the original pod to the injected
one, and the workload name a pod created by a controller is known by."""

from __future__ import annotations

import re
from typing import Any

from meshplane.shared.inject.config import Obj

_POD_TEMPLATE_HASH = re.compile(r"-[0-9a-z]{1,10}$")


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def json_patch(before: Any, after: Any, path: tuple[str, ...] = ()) -> list[Obj]:
    """Operations that turn ``before`` into ``after``: objects are compared key by key, anything
    else (lists included) that differs is replaced whole."""
    if before == after:
        return []
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [{"op": "replace", "path": _pointer(path), "value": after}]
    ops: list[Obj] = []
    for key in before:
        if key not in after:
            ops.append({"op": "remove", "path": _pointer((*path, key))})
    for key, value in after.items():
        if key not in before:
            ops.append({"op": "add", "path": _pointer((*path, key)), "value": value})
        else:
            ops.extend(json_patch(before[key], value, (*path, key)))
    return ops


def workload_name(pod: Obj) -> str:
    """The name Istio gives the pod's workload: a ReplicaSet's Deployment (its name less the
    pod-template hash), another controller's name, else the pod's name or ``generateName``."""
    meta = pod.get("metadata") or {}
    owners = meta.get("ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        if isinstance(owner, dict) and owner.get("controller") and isinstance(owner.get("name"), str):
            if owner.get("kind") == "ReplicaSet":
                return _POD_TEMPLATE_HASH.sub("", owner["name"])
            return str(owner["name"])
    name = meta.get("name") or str(meta.get("generateName") or "").rstrip("-")
    return str(name)
