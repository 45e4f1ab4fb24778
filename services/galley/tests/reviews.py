"""AdmissionReview bodies as the Kubernetes API server sends them, for the webhook tests."""

from __future__ import annotations

import json
import uuid
from typing import Any


def virtual_service(name: str = "reviews", routes: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hosts": ["reviews"],
        "http": [
            {
                "name": f"r{i}",
                "match": [{"uri": {"prefix": f"/api/v{i}"}, "headers": {"end-user": {"exact": f"user{i}"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100}],
                "timeout": "5s",
                "retries": {"attempts": 3, "perTryTimeout": "2s"},
            }
            for i in range(routes)
        ],
    }
    body.update(spec)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def review(
    obj: dict[str, Any] | None,
    *,
    version: str = "v1",
    operation: str = "CREATE",
    dry_run: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview request for ``obj`` in ``admission.k8s.io/<version>``."""
    kind = obj.get("kind", "") if obj else "VirtualService"
    group = (obj.get("apiVersion", "") if obj else "networking.istio.io/v1").rpartition("/")[0]
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
        "requestKind": {"group": group, "version": "v1", "kind": kind},
        "name": (obj or {}).get("metadata", {}).get("name", ""),
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": obj,
        "oldObject": obj if operation == "UPDATE" else None,
        "dryRun": dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    return {"apiVersion": f"admission.k8s.io/{version}", "kind": "AdmissionReview", "request": request}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
