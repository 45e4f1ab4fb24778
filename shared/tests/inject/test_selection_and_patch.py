"""Istio's ``injectRequired`` rules, the answer's JSON Patch and a controller-made pod's workload name."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.shared.inject import InjectorConfig, injection_required, json_patch
from meshplane.shared.inject.patch import workload_name

ENABLED, DISABLED = InjectorConfig(), InjectorConfig(policy="disabled")


def pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **spec: Any) -> Any:
    return {"metadata": {"labels": labels or {}, "annotations": annotations or {}}, "spec": spec}


@pytest.mark.parametrize(
    ("obj", "namespace", "config", "expected"),
    [
        (pod(), "default", ENABLED, True),
        (pod(), "default", DISABLED, False),
        (pod({"sidecar.istio.io/inject": "true"}), "default", DISABLED, True),
        (pod(annotations={"sidecar.istio.io/inject": "true"}), "default", DISABLED, True),
        # the label wins over the legacy annotation
        (
            pod({"sidecar.istio.io/inject": "false"}, {"sidecar.istio.io/inject": "true"}),
            "default",
            ENABLED,
            False,
        ),
        # only the exact strings mean something; anything else falls back to the policy
        (pod({"sidecar.istio.io/inject": "False"}), "default", ENABLED, True),
        (pod({"sidecar.istio.io/inject": "yes"}), "default", DISABLED, False),
        (pod({"sidecar.istio.io/inject": "true"}, hostNetwork=True), "default", ENABLED, False),
        (pod({"sidecar.istio.io/inject": "true"}), "kube-system", ENABLED, False),
        (pod(annotations={"sidecar.istio.io/status": "{}"}), "default", ENABLED, False),
    ],
)
def test_injection_required_as_istio(
    obj: Any, namespace: str, config: InjectorConfig, expected: bool
) -> None:
    assert injection_required(obj, namespace, config) is expected


def test_json_patch_adds_replaces_and_removes_with_escaped_keys() -> None:
    before = {
        "metadata": {"annotations": {"a/b": "1", "gone": "x", "t~": "1"}},
        "spec": {"containers": [{"name": "app"}]},
    }
    after = {
        "metadata": {"annotations": {"a/b": "2", "sidecar.istio.io/status": "{}"}, "labels": {"x": "z"}},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
    }
    assert json_patch(before, after) == [
        {"op": "remove", "path": "/metadata/annotations/gone"},
        {"op": "remove", "path": "/metadata/annotations/t~0"},
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
        {"op": "add", "path": "/metadata/annotations/sidecar.istio.io~1status", "value": "{}"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "z"}},
        {"op": "replace", "path": "/spec/containers", "value": after["spec"]["containers"]},
    ]
    assert json_patch(after, after) == []


@pytest.mark.parametrize(
    ("meta", "name"),
    [
        (
            {
                "generateName": "reviews-v1-7d8f9c6b5d-",
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "reviews-v1-7d8f9c6b5d", "controller": True}
                ],
            },
            "reviews-v1",
        ),
        (
            {
                "generateName": "nightly-29012-",
                "ownerReferences": [{"kind": "Job", "name": "nightly-29012", "controller": True}],
            },
            "nightly-29012",
        ),
        ({"generateName": "web-"}, "web"),
        ({"name": "solo"}, "solo"),
    ],
)
def test_workload_name_of_a_pod(meta: dict[str, Any], name: str) -> None:
    assert workload_name({"metadata": meta}) == name
