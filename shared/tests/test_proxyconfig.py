"""The effective ProxyConfig of a workload: Istio's precedence and merge rules, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.shared.proxyconfig import (
    ProxyConfigError,
    ProxyConfigs,
    ProxyHeaders,
    ProxySettings,
    check_proxy_config,
    not_applied,
)


def resource(
    namespace: str, name: str, spec: dict[str, Any], created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": name, "creationTimestamp": created}
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ProxyConfig",
        "metadata": meta,
        "spec": spec,
    }


MESH = {"concurrency": 1, "drainDuration": "30s", "proxyMetadata": {"FROM_MESH": "m", "SHARED": "mesh"}}
OBJECTS = [
    resource("istio-system", "mesh-wide", {"concurrency": 2, "environmentVariables": {"SHARED": "root"}}),
    resource("shop", "namespace-wide", {"concurrency": 3, "image": {"imageType": "debug"}}),
    resource("shop", "reviews", {"selector": {"matchLabels": {"app": "reviews"}}, "concurrency": 5}),
    resource("other", "reviews", {"selector": {"matchLabels": {"app": "reviews"}}, "concurrency": 9}),
]
CONFIGS = ProxyConfigs.build(MESH, OBJECTS, "istio-system")


def test_each_level_overrides_the_one_below() -> None:
    # mesh defaultConfig < root namespace < workload namespace < annotation < workload selector
    assert CONFIGS.effective("elsewhere", {})["concurrency"] == 2
    assert CONFIGS.effective("shop", {"app": "ratings"})["concurrency"] == 3
    assert CONFIGS.effective("shop", {"app": "ratings"}, "concurrency: 4")["concurrency"] == 4
    assert CONFIGS.effective("shop", {"app": "reviews"}, "concurrency: 4")["concurrency"] == 5
    assert ProxyConfigs.build(MESH, []).effective("shop", {})["concurrency"] == 1
    # a selector only applies in its own namespace, and the root namespace's selectors to nobody else
    assert CONFIGS.effective("elsewhere", {"app": "reviews"})["concurrency"] == 2


def test_fields_merge_across_levels_and_environment_variables_become_proxy_metadata() -> None:
    pc = CONFIGS.effective("shop", {"app": "reviews"}, "proxyMetadata: {FROM_POD: p}\ndrainDuration: 7s")
    assert pc["proxyMetadata"] == {"FROM_MESH": "m", "SHARED": "root", "FROM_POD": "p"}
    assert pc["drainDuration"] == "7s" and pc["image"] == {"imageType": "debug"}
    settings = ProxySettings.of(pc)
    assert (settings.concurrency, settings.drain_seconds, settings.image_type) == (5, 7.0, "debug")


def test_lists_append_as_protobuf_merge_does() -> None:
    mesh = {"proxyStatsMatcher": {"inclusionPrefixes": ["http."]}}
    pc = ProxyConfigs.build(mesh, []).effective("a", {}, "proxyStatsMatcher: {inclusionPrefixes: [tcp.]}")
    assert pc["proxyStatsMatcher"]["inclusionPrefixes"] == ["http.", "tcp."]  # the lower level first


def test_the_oldest_matching_selector_wins() -> None:
    older = resource(
        "shop", "b-old", {"selector": {"matchLabels": {"app": "x"}}, "concurrency": 6}, "2025-01-01T00:00:00Z"
    )
    newer = resource(
        "shop", "a-new", {"selector": {"matchLabels": {"app": "x"}}, "concurrency": 7}, "2026-06-01T00:00:00Z"
    )
    assert (
        ProxyConfigs.build({}, [newer, older]).effective("shop", {"app": "x", "v": "1"})["concurrency"] == 6
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"concurrency": -1}, "concurrency: expected a whole number >= 0"),
        ({"drainDuration": "soon"}, "drainDuration: "),
        ({"discoveryAddress": "pilot"}, "discoveryAddress: expected HOST:PORT, got 'pilot'"),
        (
            {"holdApplicationUntilProxyStarts": "yes"},
            "holdApplicationUntilProxyStarts: expected true or false",
        ),
        (
            {"proxyStatsMatcher": {"inclusionPrefix": ["a"]}},
            "proxyStatsMatcher.inclusionPrefix: unknown field",
        ),
        ({"proxyMetadata": ["A=1"]}, "proxyMetadata: expected a map"),
        ("concurrency", "expected a ProxyConfig mapping, got str"),
    ],
)
def test_bad_values_are_named(doc: Any, message: str) -> None:
    with pytest.raises(ProxyConfigError, match="^here: " + message.replace("(", r"\(").replace("[", r"\[")):
        check_proxy_config(doc, "here")


def test_a_bad_annotation_is_named() -> None:
    with pytest.raises(ProxyConfigError, match=r"annotation proxy.istio.io/config: not valid YAML"):
        CONFIGS.effective("shop", {}, "concurrency: [")


def test_stats_matcher_keeps_istios_required_prefixes_and_envoy_args() -> None:
    settings = ProxySettings.of({"proxyStatsMatcher": {"inclusionSuffixes": ["rq_total"]}, "concurrency": 0})
    patterns = settings.stats_config()["stats_matcher"]["inclusion_list"]["patterns"]
    assert {"prefix": "cluster_manager"} in patterns and {"suffix": "rq_total"} in patterns
    assert settings.envoy_args() == []  # 0: every core, Envoy's own default
    assert ProxySettings.of({"drainDuration": "45s"}).envoy_args() == [
        "--drain-time-s",
        "45",
        "--drain-strategy",
        "immediate",
    ]
    assert ProxySettings.of({}).stats_config() == {}
    assert ProxySettings.of({"image": {"imageType": "fancy"}}).image_type == "default"


def test_proxy_headers_applied_and_the_rest_named() -> None:
    doc = {"proxyHeaders": {"server": {"disabled": True}, "attemptCount": {"disabled": True}}, "tracing": {}}
    assert not_applied(check_proxy_config(doc, "here")) == ["proxyHeaders.attemptCount", "tracing"]
    headers = ProxyHeaders.of(doc)
    assert headers.server_pass_through and not headers.server_name and headers.generate_request_id
    assert ProxyHeaders.of({"proxyHeaders": "nonsense"}).is_default  # Pilot: malformed metadata is unset
    with pytest.raises(ProxyConfigError, match=r"^here: proxyHeaders.requestId: expected \{disabled"):
        check_proxy_config({"proxyHeaders": {"requestId": {"disabled": "yes"}}}, "here")
