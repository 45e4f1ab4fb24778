"""Telemetry and EnvoyFilter rules: verdict and field path per case."""

from __future__ import annotations

from typing import Any

import pytest

TELEMETRY_CASES = [
    (
        "tracing",
        {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 1.5}]},
        True,
        None,
    ),
    (
        "sampling 101",
        {"tracing": [{"randomSamplingPercentage": 101}]},
        False,
        "spec.tracing[0].randomSamplingPercentage",
    ),
    (
        "sampling negative",
        {"tracing": [{"randomSamplingPercentage": -1}]},
        False,
        "spec.tracing[0].randomSamplingPercentage",
    ),
    (
        "sampling string",
        {"tracing": [{"randomSamplingPercentage": "lots"}]},
        False,
        "spec.tracing[0].randomSamplingPercentage",
    ),
    (
        "empty provider name",
        {"tracing": [{"providers": [{"name": ""}]}]},
        False,
        "spec.tracing[0].providers[0].name",
    ),
    ("two tracing warns", {"tracing": [{}, {}]}, True, "spec.tracing"),
    (
        "two providers warns",
        {"tracing": [{"providers": [{"name": "a"}, {"name": "b"}]}]},
        True,
        "spec.tracing[0].providers",
    ),
    ("literal tag", {"tracing": [{"customTags": {"env": {"literal": {"value": "prod"}}}}]}, True, None),
    (
        "literal tag empty",
        {"tracing": [{"customTags": {"env": {"literal": {}}}}]},
        False,
        "spec.tracing[0].customTags.env.literal.value",
    ),
    (
        "header tag no name",
        {"tracing": [{"customTags": {"h": {"header": {"defaultValue": "x"}}}}]},
        False,
        "spec.tracing[0].customTags.h.header.name",
    ),
    (
        "env tag no name",
        {"tracing": [{"customTags": {"h": {"environment": {}}}}]},
        False,
        "spec.tracing[0].customTags.h.environment.name",
    ),
    ("tag with nothing", {"tracing": [{"customTags": {"h": {}}}]}, False, "spec.tracing[0].customTags.h"),
    ("tracing mode", {"tracing": [{"match": {"mode": "CLIENT"}}]}, True, None),
    ("bad tracing mode", {"tracing": [{"match": {"mode": "BOTH"}}]}, False, "spec.tracing[0].match.mode"),
    (
        "metrics upsert",
        {
            "metrics": [
                {"overrides": [{"tagOverrides": {"a": {"operation": "UPSERT", "value": "request.host"}}}]}
            ]
        },
        True,
        None,
    ),
    (
        "metrics upsert no value",
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "UPSERT"}}}]}]},
        False,
        "spec.metrics[0].overrides[0].tagOverrides.a.value",
    ),
    (
        "metrics remove with value",
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "REMOVE", "value": "x"}}}]}]},
        False,
        "spec.metrics[0].overrides[0].tagOverrides.a.value",
    ),
    (
        "metrics empty custom metric",
        {"metrics": [{"overrides": [{"match": {"customMetric": ""}}]}]},
        False,
        "spec.metrics[0].overrides[0].match.customMetric",
    ),
    ("metrics reporting interval", {"metrics": [{"reportingInterval": "15s"}]}, True, None),
    (
        "metrics bad reporting interval",
        {"metrics": [{"reportingInterval": "0.1ms"}]},
        False,
        "spec.metrics[0].reportingInterval",
    ),
    (
        "access log filter",
        {"accessLogging": [{"filter": {"expression": "response.code >= 500"}}]},
        True,
        None,
    ),
    (
        "access log filter unbalanced",
        {"accessLogging": [{"filter": {"expression": "size(request.headers"}}]},
        False,
        "spec.accessLogging[0].filter.expression",
    ),
    (
        "access log filter empty",
        {"accessLogging": [{"filter": {"expression": ""}}]},
        False,
        "spec.accessLogging[0].filter.expression",
    ),
    (
        "selector and targetRef",
        {"selector": {"matchLabels": {"a": "b"}}, "targetRef": {"kind": "Service", "group": "", "name": "a"}},
        False,
        "spec",
    ),
]

LISTENER_MATCH = {"context": "SIDECAR_INBOUND", "listener": {"portNumber": 8080}}


def patch(
    apply_to: str, match: dict[str, Any] | None, operation: str | None, value: Any = None
) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if operation is not None:
        p["operation"] = operation
    if value is not None:
        p["value"] = value
    cp: dict[str, Any] = {"applyTo": apply_to, "patch": p}
    if match is not None:
        cp["match"] = match
    return {"configPatches": [cp]}


ENVOY_FILTER_CASES = [
    (
        "route configuration ADD is ignored, as Istio, and warns",
        patch("ROUTE_CONFIGURATION", {"routeConfiguration": {"portNumber": 80}}, "ADD", {"name": "x"}),
        True,
        "spec.configPatches[0].applyTo",
    ),
    (
        "ECDS is not served: EXTENSION_CONFIG warns",
        patch("EXTENSION_CONFIG", None, "ADD", {"name": "x"}),
        True,
        "spec.configPatches[0].applyTo",
    ),
    (
        "BOOTSTRAP warns",
        patch("BOOTSTRAP", None, "MERGE", {"node": {"id": "x"}}),
        True,
        "spec.configPatches[0].applyTo",
    ),
    (
        "WAYPOINT context warns",
        patch("CLUSTER", {"context": "WAYPOINT"}, "REMOVE"),
        True,
        "spec.configPatches[0].match.context",
    ),
    (
        "listener insert is an ADD, applied",
        patch("LISTENER", None, "INSERT_FIRST", {"name": "x"}),
        True,
        None,
    ),
    (
        "listener portName warns (Istio does not implement it)",
        patch("LISTENER", {"listener": {"portName": "http"}}, "REMOVE"),
        True,
        "spec.configPatches[0].match.listener.portName",
    ),
    (
        "targetRefs not applied warns",
        {
            "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}],
            **patch("CLUSTER", None, "REMOVE"),
        },
        True,
        "spec.targetRefs",
    ),
    ("always warns", patch("CLUSTER", {"cluster": {"service": "a"}}, "REMOVE"), True, "spec"),
    (
        "merge",
        patch("CLUSTER", {"cluster": {"service": "a"}}, "MERGE", {"connect_timeout": "1s"}),
        True,
        None,
    ),
    (
        "no value",
        patch("CLUSTER", {"cluster": {"service": "a"}}, "MERGE"),
        False,
        "spec.configPatches[0].patch.value",
    ),
    ("no operation", patch("CLUSTER", None, None, {"a": 1}), False, "spec.configPatches[0].patch.operation"),
    (
        "bad operation",
        patch("CLUSTER", None, "UPSERT", {"a": 1}),
        False,
        "spec.configPatches[0].patch.operation",
    ),
    (
        "no applyTo",
        {"configPatches": [{"patch": {"operation": "REMOVE"}}]},
        False,
        "spec.configPatches[0].applyTo",
    ),
    ("bad applyTo", patch("LISTENERS", None, "REMOVE"), False, "spec.configPatches[0].applyTo"),
    ("no patch", {"configPatches": [{"applyTo": "CLUSTER"}]}, False, "spec.configPatches[0].patch"),
    (
        "http filter on route match",
        patch("HTTP_FILTER", {"routeConfiguration": {"portNumber": 80}}, "REMOVE"),
        False,
        "spec.configPatches[0].match",
    ),
    (
        "route on listener match",
        patch("VIRTUAL_HOST", LISTENER_MATCH, "REMOVE"),
        False,
        "spec.configPatches[0].match",
    ),
    (
        "cluster on listener match",
        patch("CLUSTER", LISTENER_MATCH, "REMOVE"),
        False,
        "spec.configPatches[0].match",
    ),
    (
        "bad proxy version regex",
        patch("CLUSTER", {"proxy": {"proxyVersion": "^1\\.(?=2)"}}, "REMOVE"),
        False,
        "spec.configPatches[0].match.proxy.proxyVersion",
    ),
    ("proxy version regex", patch("CLUSTER", {"proxy": {"proxyVersion": "^1\\.2.*"}}, "REMOVE"), True, None),
    (
        "filter without name",
        patch("NETWORK_FILTER", {"listener": {"filterChain": {"filter": {}}}}, "REMOVE"),
        False,
        "spec.configPatches[0].match.listener.filterChain.filter.name",
    ),
    (
        "sub filter on network filter",
        patch(
            "NETWORK_FILTER",
            {
                "listener": {
                    "filterChain": {
                        "filter": {
                            "name": "envoy.filters.network.http_connection_manager",
                            "subFilter": {"name": "x"},
                        }
                    }
                }
            },
            "REMOVE",
        ),
        False,
        "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
    ),
    (
        "sub filter wrong parent",
        patch(
            "HTTP_FILTER",
            {
                "listener": {
                    "filterChain": {
                        "filter": {"name": "envoy.filters.network.tcp_proxy", "subFilter": {"name": "x"}}
                    }
                }
            },
            "REMOVE",
        ),
        False,
        "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
    ),
    (
        "deprecated filter name warns",
        patch(
            "NETWORK_FILTER",
            {"listener": {"filterChain": {"filter": {"name": "envoy.http_connection_manager"}}}},
            "REMOVE",
        ),
        True,
        "spec.configPatches[0].match.listener.filterChain.filter.name",
    ),
    (
        "typed config without type",
        patch(
            "HTTP_FILTER", LISTENER_MATCH, "INSERT_BEFORE", {"name": "x", "typed_config": {"inlineCode": "x"}}
        ),
        False,
        "spec.configPatches[0].patch.value",
    ),
    (
        "bad context",
        patch("CLUSTER", {"context": "EVERYWHERE"}, "REMOVE"),
        False,
        "spec.configPatches[0].match.context",
    ),
    (
        "empty selector warns",
        {"workloadSelector": {"labels": {}}, **patch("CLUSTER", None, "REMOVE")},
        True,
        "spec.workloadSelector.labels",
    ),
    ("deprecated filters field", {"filters": [{"filterName": "envoy.lua"}]}, False, "spec.filters"),
]


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in TELEMETRY_CASES], ids=[c[0] for c in TELEMETRY_CASES]
)
def test_telemetry(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("Telemetry", spec, valid, path)


@pytest.mark.parametrize(
    ("spec", "valid", "path"), [c[1:] for c in ENVOY_FILTER_CASES], ids=[c[0] for c in ENVOY_FILTER_CASES]
)
def test_envoy_filter(check_case: Any, spec: Any, valid: bool, path: str | None) -> None:
    check_case("EnvoyFilter", spec, valid, path)


@pytest.mark.parametrize(
    ("kind", "spec", "path", "field"),
    [
        ("Telemetry", {"metrics": [{"providers": [{"name": "prometheus"}]}]}, "spec.metrics", "metrics"),
        (
            "Telemetry",
            {"metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "disabled": True}]}]},
            "spec.metrics",
            "metrics",
        ),
        (
            "Telemetry",
            {"tracing": [{"disableContextPropagation": True}]},
            "spec.tracing[0].disableContextPropagation",
            "disableContextPropagation",
        ),
        (
            "Telemetry",
            {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]},
            "spec.targetRefs",
            "targetRefs",
        ),
        ("WasmPlugin", {"url": "oci://ghcr.io/example/plugin:1"}, "spec", "WasmPlugin"),
    ],
)
def test_accepted_but_not_applied_is_warned(kind: str, spec: Any, path: str, field: str) -> None:
    from meshplane.shared.config import validate_object

    group = "telemetry.istio.io" if kind == "Telemetry" else "extensions.istio.io"
    obj = {
        "apiVersion": f"{group}/v1alpha1",
        "kind": kind,
        "metadata": {"name": "t", "namespace": "d"},
        "spec": spec,
    }
    result = validate_object(obj)
    assert result.valid, result.errors
    texts = [str(w) for w in result.warnings if w.path == path]
    assert any(f"accepted, not applied by meshplane: {field}" in t for t in texts), texts


def test_applied_telemetry_is_not_warned() -> None:
    from meshplane.shared.config import validate_object

    spec = {
        "tracing": [
            {
                "providers": [{"name": "otel"}],
                "randomSamplingPercentage": 10,
                "customTags": {"a": {"literal": {"value": "b"}}},
                "disableSpanReporting": False,
            }
        ],
        "accessLogging": [
            {"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 400"}}
        ],
    }
    obj = {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "t"},
        "spec": spec,
    }
    result = validate_object(obj)
    assert result.valid and not [w for w in result.warnings if "not applied" in str(w)], result.warnings


def test_applied_patches_and_proxy_matches_are_not_warned_as_not_applied() -> None:
    from meshplane.shared.config.rules.envoy_filter import APPLIED, NOT_APPLIED
    from meshplane.shared.config.validate import validate_object

    for apply_to, operations in APPLIED.items():
        for op in operations:
            value = None if op == "REMOVE" else {"name": "x"}
            spec = patch(apply_to, {"proxy": {"proxyVersion": "^1\\.2", "metadata": {"A": "b"}}}, op, value)
            obj = {
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "EnvoyFilter",
                "metadata": {"name": "f", "namespace": "default"},
                "spec": spec,
            }
            result = validate_object(obj)
            not_applied = [str(w) for w in result.warnings if NOT_APPLIED in str(w)]
            assert not not_applied, (apply_to, op, not_applied)
