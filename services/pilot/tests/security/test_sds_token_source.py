"""SDS configs for a proxy that asks (node metadata ``SDS_TOKEN_PATH``) for token-bearing SDS."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import config_source_pb2
from envoy.config.grpc_credential.v3 import file_based_metadata_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.listeners import inbound_listeners
from meshplane.pilot.model.proxy import InvalidNode, Proxy, parse_proxy

from .helpers import HOST, NS, SIDECAR_LABELS, cart_proxy, cfg, context

TOKEN = "/var/run/secrets/tokens/istio-token"
NODE = f"sidecar~10.0.0.1~cart-1.{NS}~{NS}.svc.cluster.local"


def _proxy(**extra: str) -> Proxy:
    meta = struct_pb2.Struct()
    meta.update({"LABELS": SIDECAR_LABELS, "INTERCEPTION_MODE": "NONE", **extra})
    return parse_proxy(NODE, meta)


def _sources(proxy: Proxy) -> list[config_source_pb2.ConfigSource]:
    """The sds_config of every SDS secret in the cart cluster and the STRICT inbound listener."""
    ctx = context(cfg("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}))
    cluster = next(c for c in build_clusters(ctx, proxy) if c.name == f"outbound|8080||{HOST}")
    up = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket_matches[0].transport_socket.typed_config.Unpack(up)
    lis = next(x for x in inbound_listeners(ctx, proxy) if x.name.endswith("_8080"))
    down = tls_pb2.DownstreamTlsContext()
    assert lis.filter_chains[0].transport_socket.typed_config.Unpack(down)
    out = []
    for common in (up.common_tls_context, down.common_tls_context):
        out.append(common.tls_certificate_sds_secret_configs[0].sds_config)
        out.append(common.combined_validation_context.validation_context_sds_secret_config.sds_config)
    return out


def test_token_path_metadata_makes_google_grpc_sds_with_file_based_bearer_token() -> None:
    sources = _sources(_proxy(SDS_TOKEN_PATH=TOKEN))
    assert len(sources) == 4
    for source in sources:
        assert source.api_config_source.api_type == config_source_pb2.ApiConfigSource.GRPC
        (service,) = source.api_config_source.grpc_services
        google = service.google_grpc
        assert google.target_uri == "unix:/var/run/secrets/workload-spiffe-uds/socket"
        assert google.stat_prefix
        assert google.HasField("channel_credentials") and google.channel_credentials.HasField(
            "local_credentials"
        )
        assert google.credentials_factory_name == "envoy.grpc_credentials.file_based_metadata"
        (creds,) = google.call_credentials
        assert creds.from_plugin.name == "envoy.grpc_credentials.file_based_metadata"
        plugin = file_based_metadata_pb2.FileBasedMetadataConfig()
        assert creds.from_plugin.typed_config.Unpack(plugin)
        assert plugin.secret_data.filename == TOKEN
        assert plugin.header_key == "authorization"
        assert plugin.header_prefix == "Bearer "


def test_sds_socket_metadata_changes_the_target() -> None:
    sources = _sources(_proxy(SDS_TOKEN_PATH=TOKEN, SDS_UDS_PATH="/run/agent/sds.sock"))
    assert {s.api_config_source.grpc_services[0].google_grpc.target_uri for s in sources} == {
        "unix:/run/agent/sds.sock"
    }


def test_without_token_metadata_sds_stays_on_the_bootstrap_sds_grpc_cluster() -> None:
    for source in _sources(cart_proxy()):
        (service,) = source.api_config_source.grpc_services
        assert service.envoy_grpc.cluster_name == "sds-grpc"
        assert not service.HasField("google_grpc")


def test_token_and_plain_proxies_do_not_share_cached_resources() -> None:
    assert _proxy(SDS_TOKEN_PATH=TOKEN).scope_key() != cart_proxy().scope_key()
    assert _proxy(SDS_TOKEN_PATH=TOKEN).scope_key() == _proxy(SDS_TOKEN_PATH=TOKEN).scope_key()


def test_destination_rule_istio_mutual_uses_the_token_source_too() -> None:
    dr = cfg("DestinationRule", "cart", {"host": HOST, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    cluster = next(
        c
        for c in build_clusters(context(dr), _proxy(SDS_TOKEN_PATH=TOKEN))
        if c.name.startswith("outbound|8080")
    )
    up = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(up)
    service: Any = up.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config
    assert service.api_config_source.grpc_services[0].google_grpc.target_uri.startswith("unix:")


@pytest.mark.parametrize(
    ("meta", "names"),
    [
        ({"SDS_TOKEN_PATH": "tokens/istio-token"}, "SDS_TOKEN_PATH"),
        ({"SDS_TOKEN_PATH": TOKEN, "SDS_UDS_PATH": "sds.sock"}, "SDS_UDS_PATH"),
    ],
)
def test_relative_sds_paths_are_rejected_naming_the_key(meta: dict[str, str], names: str) -> None:
    with pytest.raises(InvalidNode, match=names):
        _proxy(**meta)
