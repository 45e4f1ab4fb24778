"""``POST /inject`` (Istio's sidecar injector) over HTTP with real AdmissionReview bodies."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import pytest
import yaml

from meshplane.ctl.inject import inject_documents
from meshplane.shared.inject import InjectorConfig

from .reviews import encode, review
from .test_webhook import JSON, sample


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "reviews-v1",
            "namespace": "default",
            "labels": {"app": "reviews", "version": "v1"},
            "annotations": annotations or {},
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}], **spec},
    }


def apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/remove on objects, enough to check the answer's patch."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = out
        for part in parents:
            target = target[part]
        if op["op"] == "remove":
            del target[last]
        else:
            assert op["op"] in ("add", "replace") and (op["op"] == "add") != (last in target), op
            target[last] = op["value"]
    return out


async def answer(webhook: httpx.AsyncClient, obj: Any, version: str = "v1") -> dict[str, Any]:
    resp = await webhook.post("/inject", content=encode(review(obj, version=version)), headers=JSON)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["apiVersion"] == f"admission.k8s.io/{version}" and body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    return response


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_a_pod_gets_a_json_patch_to_what_kube_inject_produces(
    webhook: httpx.AsyncClient, version: str
) -> None:
    original = pod()
    injected = sample("sidecar_injection_success_total")
    response = await answer(webhook, original, version)
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = apply(original, json.loads(base64.b64decode(response["patch"])))
    offline = copy.deepcopy(original)
    offline["metadata"].pop("managedFields")
    (expected,) = yaml.safe_load_all(inject_documents(yaml.safe_dump(offline), InjectorConfig()))
    patched["metadata"].pop("managedFields")
    assert patched == expected
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["istio-validation"]
    assert sample("sidecar_injection_success_total") == injected + 1


@pytest.mark.parametrize(
    "meta",
    [
        {"labels": {"sidecar.istio.io/inject": "false"}},
        {"annotations": {"sidecar.istio.io/inject": "false"}},
        {"annotations": {"sidecar.istio.io/status": "{}"}},
    ],
)
async def test_an_opted_out_or_injected_pod_is_allowed_unchanged(
    webhook: httpx.AsyncClient, meta: dict[str, Any]
) -> None:
    obj = pod()
    for key, value in meta.items():
        obj["metadata"][key].update(value)
    skipped = sample("sidecar_injection_skip_total")
    response = await answer(webhook, obj)
    assert response == {"uid": response["uid"], "allowed": True}
    assert sample("sidecar_injection_skip_total") == skipped + 1


async def test_host_network_pods_are_not_injected(webhook: httpx.AsyncClient) -> None:
    response = await answer(webhook, pod(hostNetwork=True))
    assert response["allowed"] is True and "patch" not in response


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            pod({"sidecar.istio.io/interceptionMode": "MAGIC"}),
            "annotation sidecar.istio.io/interceptionMode='MAGIC' is invalid: "
            "expected one of REDIRECT, TPROXY, NONE",
        ),
        (
            pod({"inject.istio.io/templates": "gateway"}),
            "annotation inject.istio.io/templates='gateway' is invalid: "
            "requested template 'gateway' not found; have sidecar",
        ),
        (
            {**pod(), "spec": {"containers": "reviews"}},
            "spec.containers: expected a list of containers, got str",
        ),
        (
            {**pod(), "spec": {"containers": [{"image": "x"}]}},
            "spec.containers[0]: expected a container object with a name",
        ),
        ({**pod(), "spec": {}}, "spec.containers: the pod has no containers"),
        ({**pod(), "spec": "nope"}, "spec: expected an object"),
        (
            {**pod(), "metadata": {"name": "x", "annotations": {"a": 1}}},
            "metadata.annotations: expected a map of strings",
        ),
        (
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
            "request.object: expected a Pod, got Service",
        ),
    ],
)
async def test_a_pod_that_cannot_be_injected_is_refused_with_the_reason(
    webhook: httpx.AsyncClient, obj: dict[str, Any], message: str
) -> None:
    failed = sample("sidecar_injection_failure_total")
    response = await answer(webhook, obj)
    assert response["allowed"] is False
    assert response["status"]["message"] == "injection failed: " + message
    assert "patch" not in response
    assert sample("sidecar_injection_failure_total") == failed + 1


async def test_bad_bodies_are_answered_4xx_like_validate(webhook: httpx.AsyncClient) -> None:
    resp = await webhook.post("/inject", content=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
    resp = await webhook.post("/inject/", content=b"[1]", headers=JSON)
    assert resp.status_code == 400 and "AdmissionReview" in resp.text


async def test_pods_with_fields_of_every_wrong_type_are_answered_never_5xx(
    webhook: httpx.AsyncClient,
) -> None:
    """Each field of a valid pod replaced by values of other JSON types: always an AdmissionReview
    answer (allowed, or refused with a reason), never a server error."""
    odd: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"a": 1}]
    fields = [
        ("metadata",),
        ("metadata", "labels"),
        ("metadata", "annotations"),
        ("metadata", "ownerReferences"),
        ("metadata", "name"),
        ("metadata", "generateName"),
        ("spec",),
        ("spec", "containers"),
        ("spec", "initContainers"),
        ("spec", "volumes"),
        ("spec", "hostNetwork"),
    ]
    for path in fields:
        for value in odd:
            body = review(pod())
            target = body["request"]["object"]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            resp = await webhook.post("/inject", content=encode(body), headers=JSON)
            assert resp.status_code in (200, 400), (path, value, resp.text)
            if resp.status_code == 200:
                response = resp.json()["response"]
                assert isinstance(response["allowed"], bool)
                if not response["allowed"]:
                    assert response["status"]["message"].startswith("injection failed: "), (path, value)
                    assert "internal error" not in response["status"]["message"], (path, value)


async def test_the_revision_path_injects_for_that_revision(webhook: httpx.AsyncClient) -> None:
    """``/inject/rev/canary`` (what the canary's and its tags' webhooks call): the proxy talks to
    Pilot ``pilot-canary`` and the pod records the revision; ``/inject`` stays the default's."""
    original = pod()
    resp = await webhook.post("/inject/rev/canary", content=encode(review(original)), headers=JSON)
    response = resp.json()["response"]
    assert response["allowed"] is True, response
    patched = apply(original, json.loads(base64.b64decode(response["patch"])))
    proxy = next(c for c in patched["spec"]["containers"] if c["name"] == "istio-proxy")
    script = proxy["command"][-1]
    assert "--pilot pilot-canary.meshplane-system.svc:" in script and "--revision canary " in script
    annotations = patched["metadata"]["annotations"]
    assert annotations["istio.io/rev"] == "canary"
    assert json.loads(annotations["sidecar.istio.io/status"])["revision"] == "canary"
    default = apply(original, json.loads(base64.b64decode((await answer(webhook, original))["patch"])))
    script = next(c for c in default["spec"]["containers"] if c["name"] == "istio-proxy")["command"][-1]
    assert "--pilot pilot.meshplane-system.svc:" in script and "--revision default " in script
    assert default["metadata"]["annotations"]["istio.io/rev"] == "default"


async def test_a_revision_that_is_not_a_dns_label_is_refused(webhook: httpx.AsyncClient) -> None:
    resp = await webhook.post("/inject/rev/Canary_1", content=encode(review(pod())), headers=JSON)
    assert resp.status_code == 200
    response = resp.json()["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        "injection failed: revision 'Canary_1' in the path is not a DNS label"
    )
