"""A proxy's version (Istio's ParseIstioVersion rules, Envoy's build version) and the feature gates."""

from __future__ import annotations

import pytest
from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.accesslog import file_logger
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.proxyversion import (
    ACCESS_LOG_OPERATORS_1_40,
    FEATURES,
    NEWEST,
    ProxyVersion,
    Version,
    envoy_build_version,
    parse_istio_version,
)
from meshplane.shared.version import ISTIO_VERSION


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1.31.4", Version(1, 31, 4)),
        ("1.32.0-beta.1", Version(1, 32, 0)),
        ("release-1.31", Version(1, 31, 65535)),  # no patch: the newest patch
        ("1.31", Version(1, 31, 65535)),
        ("", NEWEST),  # unknown proxies are treated as newest, never refused
        ("meshplane-0.1.0", NEWEST),
        ("0.9.1", NEWEST),  # Istio's regex wants a major of 1-9
    ],
)
def test_istio_version_parse_rules(text: str, want: Version) -> None:
    assert parse_istio_version(text) == want


def test_envoy_build_version_from_the_node() -> None:
    node = base_pb2.Node(id="x")
    assert envoy_build_version(node) == NEWEST and envoy_build_version(None) == NEWEST
    v = node.user_agent_build_version.version
    v.major_number, v.minor_number, v.patch = 1, 39, 3
    assert envoy_build_version(node) == Version(1, 39, 3)


def test_meshplane_proxies_send_the_emulated_release_and_get_everything() -> None:
    assert parse_istio_version(ISTIO_VERSION) == Version(1, 32, 0)
    assert ACCESS_LOG_OPERATORS_1_40.istio == Version(1, 32, 0)  # Istio 1.N ships Envoy 1.(N+8)
    assert ProxyVersion(parse_istio_version(ISTIO_VERSION), Version(1, 40, 0)).unsupported == frozenset()


@pytest.mark.parametrize(
    ("istio", "envoy", "gets"),
    [
        ("1.32.0", Version(1, 40, 0), True),
        ("", NEWEST, True),
        ("1.31.4", NEWEST, False),  # the metadata says N-1
        ("", Version(1, 39, 3), False),  # the binary says N-1, whatever the metadata
        ("1.32.0", Version(1, 39, 3), False),
    ],
)
def test_a_feature_needs_both_versions(istio: str, envoy: Version, gets: bool) -> None:
    assert ProxyVersion(parse_istio_version(istio), envoy).supports(ACCESS_LOG_OPERATORS_1_40) is gets


def _proxy(istio: str, envoy: Version = NEWEST) -> Proxy:
    md = struct_pb2.Struct()
    md.update({"ISTIO_VERSION": istio})
    return parse_proxy("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", md, envoy_version=envoy)


def test_gated_proxies_never_share_cached_config_with_current_ones() -> None:
    current, also_current, old = _proxy("1.32.1"), _proxy(""), _proxy("1.31.4")
    assert current.scope_key() == also_current.scope_key()
    assert old.scope_key() != current.scope_key()
    assert old.unsupported == {f.name for f in FEATURES}


def _format(logger: accesslog_pb2.AccessLog) -> file_pb2.FileAccessLog:
    cfg = file_pb2.FileAccessLog()
    assert logger.typed_config.Unpack(cfg)
    return cfg


def test_access_log_operators_of_1_40_become_dashes_for_older_proxies() -> None:
    text = "%REQ(:PATH)% %LISTENER_NAME% %DOWNSTREAM_CX_RTT% %ROUTE_RESOLUTION_COUNT% %RESPONSE_CODE%"
    new = _format(file_logger("/dev/stdout", text)).log_format.text_format_source.inline_string
    old = _format(
        file_logger("/dev/stdout", text, older_envoy=True)
    ).log_format.text_format_source.inline_string
    assert new == text + "\n"
    assert old == "%REQ(:PATH)% - - - %RESPONSE_CODE%\n"
    labels = (("listener", "%LISTENER_NAME%"), ("code", "%RESPONSE_CODE%"))
    fmt = _format(file_logger("/dev/stdout", labels=labels, older_envoy=True)).log_format.json_format
    assert dict(fmt) == {"listener": "-", "code": "%RESPONSE_CODE%"}
