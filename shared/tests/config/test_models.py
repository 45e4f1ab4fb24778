"""The typed models: camelCase in, snake_case attributes out, wrong types reported with paths."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from meshplane.shared.config import SpecError, models, parse_spec

REVIEWS = yaml.safe_load(
    """
hosts: [reviews]
http:
- match:
  - uri: {prefix: /v1}
    headers:
      end-user: {exact: jason}
  route:
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
    weight: 100
  timeout: 1.5s
  retries: {attempts: 3, perTryTimeout: 100ms}
  fault:
    delay: {fixedDelay: 7s, percentage: {value: 10}}
"""
)


def test_virtual_service_model_is_typed() -> None:
    vs = parse_spec("VirtualService", REVIEWS)
    assert isinstance(vs, models.VirtualService)
    route = vs.http[0] if vs.http else None
    assert route is not None and route.match is not None and route.route is not None
    assert route.match[0].uri == models.StringMatch(prefix="/v1")
    assert route.match[0].headers is not None and route.match[0].headers["end-user"].exact == "jason"
    dest = route.route[0].destination
    assert (dest.host, dest.subset, dest.port.number if dest.port else None) == ("reviews", "v2", 9080)
    assert route.timeout == timedelta(seconds=1.5)
    assert route.retries is not None and route.retries.per_try_timeout == timedelta(milliseconds=100)
    assert route.fault is not None and route.fault.delay is not None
    assert route.fault.delay.fixed_delay == timedelta(seconds=7)


def test_model_round_trips_to_istio_yaml_spelling() -> None:
    vs = parse_spec("VirtualService", REVIEWS)
    out = vs.to_yaml_dict()
    assert out["http"][0]["timeout"] == "1.5s"
    assert out["http"][0]["retries"]["perTryTimeout"] == "0.1s"
    assert parse_spec("VirtualService", out) == vs


def test_snake_case_input_is_accepted() -> None:
    dr = parse_spec(
        "DestinationRule",
        {"host": "r", "traffic_policy": {"connection_pool": {"tcp": {"max_connections": 5}}}},
    )
    assert dr.traffic_policy is not None and dr.traffic_policy.connection_pool is not None
    assert dr.traffic_policy.connection_pool.tcp is not None
    assert dr.traffic_policy.connection_pool.tcp.max_connections == 5


def test_enums_and_special_aliases() -> None:
    dr = parse_spec(
        "DestinationRule",
        {
            "host": "r",
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "outlierDetection": {"consecutive5xxErrors": 3},
                "loadBalancer": {"localityLbSetting": {"failover": [{"from": "us-east", "to": "us-west"}]}},
            },
        },
    )
    policy = dr.traffic_policy
    assert policy is not None and policy.tls is not None and policy.outlier_detection is not None
    assert policy.tls.mode is models.ClientTLSMode.ISTIO_MUTUAL
    assert policy.outlier_detection.consecutive_5xx_errors == 3
    assert policy.load_balancer is not None and policy.load_balancer.locality_lb_setting is not None
    failover = policy.load_balancer.locality_lb_setting.failover
    assert failover is not None and failover[0].from_ == "us-east"
    ap = parse_spec("AuthorizationPolicy", {"rules": [{"from": [{"source": {"principals": ["a"]}}]}]})
    assert ap.rules is not None and ap.rules[0].from_ is not None


def test_envoy_filter_patch_value_is_free_form() -> None:
    ef = parse_spec(
        "EnvoyFilter",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "patch": {"operation": "ADD", "value": {"name": "x", "any": {"deep": [1, {"a": None}]}}},
                }
            ]
        },
    )
    assert ef.config_patches is not None and ef.config_patches[0].patch is not None
    assert ef.config_patches[0].patch.value == {"name": "x", "any": {"deep": [1, {"a": None}]}}


@pytest.mark.parametrize(
    ("kind", "spec", "path"),
    [
        ("VirtualService", {"hosts": "reviews"}, "spec.hosts"),
        (
            "VirtualService",
            {"http": [{"route": [{"destination": {"host": ["a"]}}]}]},
            "spec.http[0].route[0].destination.host",
        ),
        ("Gateway", {"servers": [{"port": {"number": "eighty"}}]}, "spec.servers[0].port.number"),
        ("ServiceEntry", {"hosts": ["a"], "resolution": "MAGIC"}, "spec.resolution"),
        ("Sidecar", {"egress": [{"hosts": ["./*"], "nope": 1}]}, "spec.egress[0].nope"),
        (
            "DestinationRule",
            {"host": "r", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": 5}}}},
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        ),
    ],
)
def test_wrong_types_raise_spec_error_with_path(kind: str, spec: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(kind, spec)
    assert any(issue.path == path for issue in info.value.issues), info.value.issues


def test_kubernetes_models_keep_extra_fields() -> None:
    svc = parse_spec(
        "Service",
        {
            "ports": [{"port": 9080, "name": "http", "targetPort": 9080}],
            "selector": {"app": "reviews"},
            "clusterIP": "10.0.0.1",
            "sessionAffinity": "None",
        },
    )
    assert isinstance(svc, models.ServiceSpec)
    assert svc.cluster_ip == "10.0.0.1"
    assert svc.ports is not None and svc.ports[0].port == 9080
    assert svc.model_extra == {"sessionAffinity": "None"}
    eps = parse_spec(
        "EndpointSlice",
        {
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 9080}],
            "metadata": {"name": "reviews-abc"},
        },
    )
    assert isinstance(eps, models.EndpointSlice)
    assert eps.endpoints is not None and eps.endpoints[0].addresses == ["10.1.0.5"]


def test_unknown_kind_raises_key_error() -> None:
    with pytest.raises(KeyError):
        parse_spec("Frobnicator", {})


def test_wrong_type_messages_read_like_yaml_not_python() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            "VirtualService",
            {"hosts": "reviews", "http": [{"route": [{"destination": {"host": "r"}, "weight": "lots"}]}]},
        )
    messages = {str(issue) for issue in info.value.issues}
    assert "spec.hosts: must be a list, not the string 'reviews'" in messages
    assert "spec.http[0].route[0].weight: must be an integer, not the string 'lots'" in messages
    assert not any("instance of" in m or "Input should" in m for m in messages)
