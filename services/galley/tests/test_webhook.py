"""The admission webhook over HTTP with real AdmissionReview bodies (v1 and v1beta1)."""

from __future__ import annotations

import httpx
import pytest

from meshplane.galley.metrics import REGISTRY

from .reviews import encode, review, virtual_service

JSON = {"Content-Type": "application/json"}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_valid_object_is_allowed_in_the_version_received(
    webhook: httpx.AsyncClient, version: str
) -> None:
    body = review(virtual_service(), version=version, uid="6c1a2c4e-0001")
    passed = sample("galley_validation_passed")
    resp = await webhook.post("/validate", content=encode(body), headers=JSON)
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["apiVersion"] == f"admission.k8s.io/{version}"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "6c1a2c4e-0001"
    assert answer["response"]["allowed"] is True
    assert sample("galley_validation_passed") == passed + 1


async def test_trailing_slash_path_works(webhook: httpx.AsyncClient) -> None:
    resp = await webhook.post("/validate/", content=encode(review(virtual_service())), headers=JSON)
    assert resp.json()["response"]["allowed"] is True


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_invalid_spec_is_denied_with_the_field_named(webhook: httpx.AsyncClient, version: str) -> None:
    bad = virtual_service(hosts="reviews", retryPolicy={"attempts": 3})
    failed = sample("galley_validation_failed", {"reason": "invalid_resource"})
    resp = await webhook.post("/validate", content=encode(review(bad, version=version)), headers=JSON)
    assert resp.status_code == 200
    answer = resp.json()["response"]
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith("configuration is invalid: ")
    assert "spec.hosts" in message
    assert "spec.retryPolicy: unknown field" in message
    assert answer["status"]["code"] == 400
    assert resp.json()["apiVersion"] == f"admission.k8s.io/{version}"
    assert sample("galley_validation_failed", {"reason": "invalid_resource"}) == failed + 1


async def test_dry_run_is_validated_like_any_other(webhook: httpx.AsyncClient) -> None:
    bad = virtual_service(hosts="reviews")
    resp = await webhook.post("/validate", content=encode(review(bad, dry_run=True)), headers=JSON)
    assert resp.json()["response"]["allowed"] is False


async def test_update_is_validated_and_delete_is_allowed(webhook: httpx.AsyncClient) -> None:
    bad = virtual_service(hosts="reviews")
    upd = await webhook.post("/validate", content=encode(review(bad, operation="UPDATE")), headers=JSON)
    assert upd.json()["response"]["allowed"] is False
    body = review(bad, operation="DELETE")
    body["request"]["object"] = None
    dele = await webhook.post("/validate", content=encode(body), headers=JSON)
    assert dele.json()["response"]["allowed"] is True


async def test_unknown_istio_kind_is_denied_unrecognized_type(webhook: httpx.AsyncClient) -> None:
    obj = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualRouter",
        "metadata": {"name": "x"},
        "spec": {},
    }
    before = sample("galley_validation_failed", {"reason": "unknown_type"})
    resp = await webhook.post("/validate", content=encode(review(obj)), headers=JSON)
    answer = resp.json()["response"]
    assert answer["allowed"] is False
    assert "unrecognized type networking.istio.io/v1/VirtualRouter" in answer["status"]["message"]
    assert sample("galley_validation_failed", {"reason": "unknown_type"}) == before + 1


async def test_older_api_version_of_a_known_kind_is_accepted(webhook: httpx.AsyncClient) -> None:
    obj = virtual_service()
    obj["apiVersion"] = "networking.istio.io/v1alpha3"
    resp = await webhook.post("/validate", content=encode(review(obj)), headers=JSON)
    assert resp.json()["response"]["allowed"] is True


async def test_unknown_top_level_field_is_denied(webhook: httpx.AsyncClient) -> None:
    obj = virtual_service()
    obj["specs"] = {"hosts": ["x"]}
    resp = await webhook.post("/validate", content=encode(review(obj)), headers=JSON)
    answer = resp.json()["response"]
    assert answer["allowed"] is False
    assert "unknown field" in answer["status"]["message"]
    assert "specs" in answer["status"]["message"]


async def test_wrong_content_type_is_415(webhook: httpx.AsyncClient) -> None:
    before = sample("galley_validation_http_error", {"status": "415"})
    resp = await webhook.post(
        "/validate", content=encode(review(virtual_service())), headers={"Content-Type": "text/yaml"}
    )
    assert resp.status_code == 415
    assert "application/json" in resp.text
    assert sample("galley_validation_http_error", {"status": "415"}) == before + 1


async def test_content_type_with_charset_is_accepted(webhook: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    resp = await webhook.post("/validate", content=encode(review(virtual_service())), headers=headers)
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty"),
        (b"{not json", "malformed JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[1, 2]", "expected an AdmissionReview object"),
        (b'{"apiVersion": "v1", "kind": "Pod"}', "kind: expected AdmissionReview"),
        (b'{"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {}}', "apiVersion"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request: missing"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
            b'"request": {"operation": "CREATE"}}',
            "request.uid",
        ),
    ],
)
async def test_bad_bodies_are_400_with_a_message(
    webhook: httpx.AsyncClient, body: bytes, expected: str
) -> None:
    resp = await webhook.post("/validate", content=body, headers=JSON)
    assert resp.status_code == 400
    assert expected in resp.text


async def test_object_that_is_not_a_mapping_is_400_not_500(webhook: httpx.AsyncClient) -> None:
    body = review(virtual_service())
    body["request"]["object"] = "just a string"
    resp = await webhook.post("/validate", content=encode(body), headers=JSON)
    assert resp.status_code == 400
    assert "request.object" in resp.text


async def test_metrics_and_health_on_the_webhook_port(webhook: httpx.AsyncClient) -> None:
    await webhook.post("/validate", content=encode(review(virtual_service())), headers=JSON)
    metrics = await webhook.get("/metrics")
    lines = metrics.text.splitlines()
    # Istio's name: no _total suffix
    assert "# TYPE galley_validation_passed counter" in lines
    assert any(line.startswith("galley_validation_passed ") for line in lines)
    assert (await webhook.get("/healthz")).status_code == 200
    assert (await webhook.get("/readyz")).status_code == 200


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_warnings_are_returned_with_an_allowed_object(webhook: httpx.AsyncClient, version: str) -> None:
    obj = virtual_service()
    catch_all = {"route": [{"destination": {"host": "reviews"}}]}
    obj["spec"]["http"] += [catch_all, catch_all]  # only the last rule may have no match
    resp = await webhook.post("/validate", content=encode(review(obj, version=version)), headers=JSON)
    answer = resp.json()["response"]
    assert answer["allowed"] is True
    assert answer["warnings"], answer
    assert any(w.startswith("spec.http[2]") and "not used" in w for w in answer["warnings"]), answer[
        "warnings"
    ]


async def test_no_warnings_field_when_there_are_none(webhook: httpx.AsyncClient) -> None:
    resp = await webhook.post("/validate", content=encode(review(virtual_service())), headers=JSON)
    assert "warnings" not in resp.json()["response"]


async def test_telemetry_and_wasm_fields_not_applied_are_warned(webhook: httpx.AsyncClient) -> None:
    """Accepted (allowed) with Istio-style warnings naming what meshplane does not apply."""
    telemetry = {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "metrics": [{"providers": [{"name": "prometheus"}]}],
            "tracing": [{"randomSamplingPercentage": 5}],
        },
    }
    wasm = {
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"url": "oci://ghcr.io/example/plugin:1"},
    }
    for obj, field in (
        (telemetry, "spec.metrics: accepted, not applied by meshplane: metrics"),
        (wasm, "spec: accepted, not applied by meshplane: WasmPlugin"),
    ):
        answer = (await webhook.post("/validate", content=encode(review(obj)), headers=JSON)).json()[
            "response"
        ]
        assert answer["allowed"] is True
        assert any(w.startswith(field) for w in answer.get("warnings", [])), answer
