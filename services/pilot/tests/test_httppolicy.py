"""VirtualService per-route policies as Istio converts them: retries (defaults, retryOn codes,
backoff, remote localities, previous hosts), fault aborts by gRPC status name, uriRegexRewrite."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2 as prio

from meshplane.pilot.generators.httppolicy import fault_config, retry_policy
from meshplane.pilot.generators.httproute import translate
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.push_context import build_push_context
from meshplane.shared.config.models import HTTPFaultInjection, HTTPRetry
from meshplane.shared.config.models.virtual_service import GRPC_CODES

PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def _retry(spec: dict[str, Any] | None, consistent_hash: bool = False) -> Any:
    return retry_policy(HTTPRetry.model_validate(spec) if spec is not None else None, consistent_hash)


def test_default_retry_policy_is_istios() -> None:
    policy = _retry(None)
    assert policy.num_retries.value == 2 and policy.host_selection_retry_max_attempts == 5
    assert policy.retry_on == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [503]
    assert [p.name for p in policy.retry_host_predicate] == [PREVIOUS_HOSTS]
    assert not policy.HasField("retry_back_off") and not policy.HasField("retry_priority")
    assert _retry({"attempts": 0}) is None
    assert not _retry(None, consistent_hash=True).retry_host_predicate  # keep the hashed host


def test_retry_fields_override_the_default() -> None:
    policy = _retry(
        {
            "attempts": 4,
            "retryOn": "gateway-error, 429,503",
            "perTryTimeout": "1.5s",
            "backoff": "40ms",
            "retryRemoteLocalities": True,
            "retryIgnorePreviousHosts": False,
        }
    )
    assert policy.num_retries.value == 4
    assert policy.retry_on == "gateway-error,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [429, 503]
    assert policy.per_try_timeout.ToMilliseconds() == 1500
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 40
    assert not policy.retry_back_off.HasField("max_interval")  # Envoy's default: 10 x base
    assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    config = prio.PreviousPrioritiesConfig()
    assert policy.retry_priority.typed_config.Unpack(config) and config.update_frequency == 2
    assert not policy.retry_host_predicate
    # a retryOn without codes replaces the default 503 too, as Istio's parseRetryOn
    assert not _retry({"attempts": 1, "retryOn": "retriable-status-codes"}).retriable_status_codes
    assert [
        p.name for p in _retry({"attempts": 1, "retryIgnorePreviousHosts": True}, True).retry_host_predicate
    ] == [PREVIOUS_HOSTS]


@pytest.mark.parametrize(("name", "code"), sorted(GRPC_CODES.items(), key=lambda kv: kv[1]))
def test_grpc_fault_status_names_become_their_codes(name: str, code: int) -> None:
    fault = HTTPFaultInjection.model_validate({"abort": {"grpcStatus": name, "percentage": {"value": 50}}})
    out = fault_config(fault)
    assert out.abort.grpc_status == code and out.abort.percentage.numerator == 500000


def test_all_seventeen_grpc_codes() -> None:
    assert sorted(GRPC_CODES.values()) == list(range(17))
    assert (GRPC_CODES["NOT_FOUND"], GRPC_CODES["UNAVAILABLE"], GRPC_CODES["UNAUTHENTICATED"]) == (5, 14, 16)


def test_uri_regex_rewrite_is_envoys_regex_rewrite() -> None:
    spec = {
        "hosts": ["web"],
        "http": [
            {
                "rewrite": {"uriRegexRewrite": {"match": "^/v1/(.*)$", "rewrite": "/api/\\1"}},
                "route": [{"destination": {"host": "web.shop.svc.cluster.local", "port": {"number": 80}}}],
            }
        ],
    }
    vs = Config.parse("VirtualService", "networking.istio.io", "v1", "shop", "web", spec)
    route = translate(vs.spec.http[0], vs, build_push_context("1", {}, {}, {}), 80)
    rewrite = route.route.regex_rewrite
    assert (rewrite.pattern.regex, rewrite.substitution) == ("^/v1/(.*)$", "/api/\\1")
    assert not route.route.prefix_rewrite


@pytest.mark.parametrize(
    ("redirect", "port", "expected"),
    [
        ({"uri": "/x", "derivePort": "FROM_REQUEST_PORT"}, 8080, 8080),
        ({"uri": "/x", "derivePort": "FROM_REQUEST_PORT"}, 80, 0),  # http's default port left out
        ({"uri": "/x", "port": 443, "scheme": "https"}, 8080, 0),
        ({"uri": "/x", "port": 8443, "scheme": "https"}, 8080, 8443),
        ({"uri": "/x", "derivePort": "FROM_PROTOCOL_DEFAULT"}, 8080, 0),
    ],
)
def test_redirect_ports_as_istio(redirect: dict[str, Any], port: int, expected: int) -> None:
    spec = {"hosts": ["web"], "http": [{"match": [{"name": "m", "statPrefix": "s"}], "redirect": redirect}]}
    vs = Config.parse("VirtualService", "networking.istio.io", "v1", "shop", "web", spec)
    http = vs.spec.http[0]
    route = translate(http, vs, build_push_context("1", {}, {}, {}), port, http.match[0])
    assert route.redirect.port_redirect == expected
    assert (route.name, route.stat_prefix) == ("m", "s")


def test_host_header_operations_become_authority_rewrites() -> None:
    """As Istio: host/:authority set (over add) rewrites the authority; Envoy refuses routes that
    modify host or pseudo-headers, so those are never added or removed as headers."""
    dest = {"host": "web.shop.svc.cluster.local", "port": {"number": 80}}
    spec = {
        "hosts": ["web"],
        "http": [
            {
                "headers": {
                    "request": {"add": {"host": "added"}, "set": {"Host": "set", "x-b": "2", "x-a": "1"}}
                },
                "route": [{"destination": dest}],
            },
            {
                "route": [
                    {
                        "destination": dest,
                        "weight": 50,
                        "headers": {"request": {"add": {":authority": "one"}}},
                    },
                    {"destination": {**dest, "subset": "v2"}, "weight": 50},
                ],
            },
        ],
    }
    vs = Config.parse("VirtualService", "networking.istio.io", "v1", "shop", "web", spec)
    ctx = build_push_context("1", {}, {}, {})
    single = translate(vs.spec.http[0], vs, ctx, 80)
    assert single.route.host_rewrite_literal == "set"
    assert [h.header.key for h in single.request_headers_to_add] == ["x-a", "x-b"]
    weighted = translate(vs.spec.http[1], vs, ctx, 80).route.weighted_clusters.clusters
    assert [c.host_rewrite_literal for c in weighted] == ["one", ""]
    assert not weighted[0].request_headers_to_add


def test_jwt_claim_headers_match_the_validated_payload() -> None:
    from meshplane.pilot.generators.httproute import jwt_claim, route_match
    from meshplane.shared.config.models import HTTPMatchRequest

    assert jwt_claim("@request.auth.claims.group") == ["group"]
    assert jwt_claim("@request.auth.claims.a.b") == ["a", "b"]
    assert jwt_claim("@request.auth.claims[a.b][c]") == ["a.b", "c"]
    assert jwt_claim("@request.auth.claims") is None and jwt_claim("x-group") is None
    match = HTTPMatchRequest.model_validate(
        {
            "headers": {"@request.auth.claims.Group": {"exact": "admin"}, "X-Plain": {"exact": "1"}},
            "withoutHeaders": {"@request.auth.claims[tier]": {}},
        }
    )
    out = route_match(match)
    assert [h.name for h in out.headers] == ["x-plain"]
    has, lacks = out.dynamic_metadata
    assert has.filter == "envoy.filters.http.jwt_authn" and [p.key for p in has.path] == ["payload", "Group"]
    string_one, list_one = has.value.or_match.value_matchers
    assert (
        string_one.string_match.exact == "admin" and list_one.list_match.one_of.string_match.exact == "admin"
    )
    assert lacks.invert and lacks.value.present_match and [p.key for p in lacks.path] == ["payload", "tier"]
