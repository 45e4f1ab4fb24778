"""Where a proxy's SDS secrets come from: the bootstrap's ``sds-grpc`` cluster, or (Kubernetes)
the node agent's socket with the workload's own token.

A per-node agent serves every pod on its node, so each SDS stream must say whose certificate it
wants. As Istio 1.1–1.4 did, a proxy whose node metadata carries ``SDS_TOKEN_PATH`` gets SDS
configs using Envoy's Google gRPC client on ``unix:<SDS_UDS_PATH>`` with the file-based metadata
call credentials: Envoy reads the pod's projected service-account token from that file for each
stream and sends it as ``authorization: Bearer <token>``. Other proxies keep ``sds-grpc``.

The generators build TLS contexts with :func:`common.sds_source`; :func:`retarget_sds` rewrites
the generated clusters and listeners for a proxy that asked for token-bearing SDS.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.grpc_credential.v3 import file_based_metadata_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshplane.pilot.generators.common import pack, sds_source
from meshplane.pilot.model.proxy import Proxy

FILE_METADATA = "envoy.grpc_credentials.file_based_metadata"
TLS_SOCKET = "envoy.transport_sockets.tls"
STAT_PREFIX = "sdsstat"


def token_sds_source(token_path: str, socket_path: str) -> config_source_pb2.ConfigSource:
    """SDS over ``unix:socket_path`` carrying ``authorization: Bearer <contents of token_path>``."""
    metadata = file_based_metadata_pb2.FileBasedMetadataConfig(
        secret_data=base_pb2.DataSource(filename=token_path),
        header_key="authorization",
        header_prefix="Bearer ",
    )
    google = grpc_service_pb2.GrpcService.GoogleGrpc(
        target_uri=f"unix:{socket_path}",
        stat_prefix=STAT_PREFIX,
        credentials_factory_name=FILE_METADATA,
        channel_credentials=grpc_service_pb2.GrpcService.GoogleGrpc.ChannelCredentials(
            local_credentials=grpc_service_pb2.GrpcService.GoogleGrpc.GoogleLocalCredentials()
        ),
    )
    plugin = google.call_credentials.add().from_plugin
    plugin.name = FILE_METADATA
    plugin.typed_config.CopyFrom(pack(metadata))
    source = sds_source()
    api = source.api_config_source
    del api.grpc_services[:]
    api.grpc_services.add(google_grpc=google)
    return source


def sds_source_for(proxy: Proxy) -> config_source_pb2.ConfigSource:
    if not proxy.sds_token_path:
        return sds_source()
    return token_sds_source(proxy.sds_token_path, proxy.sds_socket_path)


def _retarget_common(common: tls_pb2.CommonTlsContext, source: config_source_pb2.ConfigSource) -> None:
    default = sds_source()
    configs = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        configs.append(common.validation_context_sds_secret_config)
    if common.HasField("combined_validation_context"):
        configs.append(common.combined_validation_context.validation_context_sds_secret_config)
    for config in configs:
        if config.sds_config == default:
            config.sds_config.CopyFrom(source)


def _retarget_socket(socket: base_pb2.TransportSocket, source: config_source_pb2.ConfigSource) -> None:
    if socket.name != TLS_SOCKET:
        return
    context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext
    if socket.typed_config.Is(tls_pb2.UpstreamTlsContext.DESCRIPTOR):
        context = tls_pb2.UpstreamTlsContext()
    elif socket.typed_config.Is(tls_pb2.DownstreamTlsContext.DESCRIPTOR):
        context = tls_pb2.DownstreamTlsContext()
    else:
        return
    socket.typed_config.Unpack(context)
    _retarget_common(context.common_tls_context, source)
    socket.typed_config.CopyFrom(pack(context))


def retarget_clusters(proxy: Proxy, clusters: Iterable[cluster_pb2.Cluster]) -> None:
    """Point the clusters' SDS configs at the node agent with the proxy's token (if it asked)."""
    if not proxy.sds_token_path:
        return
    source = sds_source_for(proxy)
    for cluster in clusters:
        if cluster.HasField("transport_socket"):
            _retarget_socket(cluster.transport_socket, source)
        for match in cluster.transport_socket_matches:
            _retarget_socket(match.transport_socket, source)


def retarget_listeners(proxy: Proxy, listeners: Iterable[listener_pb2.Listener]) -> None:
    """Point the listeners' SDS configs at the node agent with the proxy's token (if it asked)."""
    if not proxy.sds_token_path:
        return
    source = sds_source_for(proxy)
    for listener in listeners:
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            if chain.HasField("transport_socket"):
                _retarget_socket(chain.transport_socket, source)
