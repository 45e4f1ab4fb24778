"""Checks made before any kind's rules: kind lookup, top-level fields, metadata, annotations."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.shared.config import lookup_kind, validate_object

VS_SPEC = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}


def obj(kind: str = "VirtualService", api: str = "networking.istio.io/v1", **top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": {"name": "reviews"}, "spec": VS_SPEC}
    base.update(top)
    return {k: v for k, v in base.items() if v is not None}


def meta(**fields: Any) -> dict[str, Any]:
    return {"name": "reviews", **fields}


CASES = [
    ("valid", obj(), True, None),
    ("v1alpha3 accepted", obj(api="networking.istio.io/v1alpha3"), True, None),
    ("unknown version accepted", obj(api="networking.istio.io/v2"), True, None),
    ("unknown istio kind", obj(kind="VirtualServize"), False, "kind"),
    ("unknown top-level field", obj(extra={"a": 1}), False, "extra"),
    ("status allowed", obj(status={"conditions": []}), True, None),
    ("missing kind", obj(kind=None), False, "kind"),
    ("missing apiVersion", obj(api=None), False, "apiVersion"),
    ("kind not a string", obj(kind=["VirtualService"]), False, "kind"),
    ("missing metadata", obj(metadata=None), False, "metadata"),
    ("metadata not a mapping", obj(metadata="reviews"), False, "metadata"),
    ("missing name", obj(metadata={"namespace": "default"}), False, "metadata.name"),
    ("generateName", obj(metadata={"generateName": "reviews-"}), True, None),
    ("name with dots", obj(metadata=meta(name="reviews.v1")), True, None),
    ("name upper case", obj(metadata=meta(name="Reviews")), False, "metadata.name"),
    ("name too long", obj(metadata=meta(name="a" * 254)), False, "metadata.name"),
    ("bad namespace", obj(metadata=meta(namespace="my.ns")), False, "metadata.namespace"),
    ("bad label key", obj(metadata=meta(labels={"a/b/c": "x"})), False, "metadata.labels"),
    ("bad label value", obj(metadata=meta(labels={"app": "x" * 64})), False, "metadata.labels.app"),
    ("label value not string", obj(metadata=meta(labels={"replicas": 3})), False, "metadata.labels.replicas"),
    (
        "always reject",
        obj(metadata=meta(annotations={"internal.istio.io/webhook-always-reject": "true"})),
        False,
        "metadata.annotations.internal.istio.io/webhook-always-reject",
    ),
    (
        "internal parent annotation",
        obj(metadata=meta(annotations={"internal.istio.io/parents": "x"})),
        False,
        "metadata.annotations.internal.istio.io/parents",
    ),
    (
        "dry-run on VirtualService",
        obj(metadata=meta(annotations={"istio.io/dry-run": "true"})),
        False,
        "metadata.annotations.istio.io/dry-run",
    ),
    (
        "dry-run on AuthorizationPolicy",
        obj(
            kind="AuthorizationPolicy",
            api="security.istio.io/v1",
            spec={},
            metadata=meta(annotations={"istio.io/dry-run": "true"}),
        ),
        True,
        None,
    ),
    (
        "dry-run not boolean",
        obj(
            kind="AuthorizationPolicy",
            api="security.istio.io/v1",
            spec={},
            metadata=meta(annotations={"istio.io/dry-run": "yes"}),
        ),
        False,
        "metadata.annotations.istio.io/dry-run",
    ),
    (
        "dry-run on CUSTOM",
        obj(
            kind="AuthorizationPolicy",
            api="security.istio.io/v1",
            spec={"action": "CUSTOM", "provider": {"name": "x"}, "rules": [{}]},
            metadata=meta(annotations={"istio.io/dry-run": "false"}),
        ),
        False,
        "metadata.annotations.istio.io/dry-run",
    ),
    ("spec not a mapping", obj(spec=["hosts"]), False, "spec"),
    ("null spec", obj(kind="PeerAuthentication", api="security.istio.io/v1", spec=None), True, None),
]


@pytest.mark.parametrize(("o", "valid", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_object_checks(o: dict[str, Any], valid: bool, path: str | None) -> None:
    result = validate_object(o)
    errors = [str(e) for e in result.errors]
    assert result.valid is valid, errors
    if path is not None:
        assert any(e.path.startswith(path) for e in result.errors), errors


def test_unknown_kind_message_names_the_kind() -> None:
    result = validate_object(obj(kind="Frobnicator"))
    assert not result.valid
    assert "unrecognized type Frobnicator" in str(result.errors[0])


def test_unknown_top_level_field_message() -> None:
    result = validate_object(obj(extra=1))
    assert [str(e) for e in result.errors] == ["extra: unknown field"]


@pytest.mark.parametrize(
    "o",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x"},
            "spec": {"replicas": "many"},
        },
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "x"}},
    ],
    ids=["configmap", "deployment", "gateway-api"],
)
def test_non_istio_kinds_are_valid_and_unchecked(o: dict[str, Any]) -> None:
    result = validate_object(o)
    assert result.valid
    assert result.kind is None


def test_non_mapping_object_is_an_error_not_a_traceback() -> None:
    result = validate_object(["not", "an", "object"])
    assert not result.valid
    assert "mapping" in str(result.errors[0])


def test_result_carries_kind_info() -> None:
    result = validate_object(obj())
    assert result.kind == lookup_kind("networking.istio.io", "VirtualService")
    assert result.kind is not None and result.kind.plural == "virtualservices"


def test_issue_str_is_path_colon_message() -> None:
    spec = {**VS_SPEC, "http": [{"route": [{"destination": {"host": "*"}}]}]}
    result = validate_object(obj(spec=spec))
    assert str(result.errors[0]) == (
        "spec.http[0].route[0].destination.host: wildcard '*' is not allowed as a destination host"
    )
