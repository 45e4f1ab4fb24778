"""Mutual TLS between sidecars: auto mTLS on outbound clusters, TLS on inbound filter chains.

Outbound (Istio's auto mTLS, unless MeshConfig ``enableAutoMtls: false``): a cluster without
DestinationRule TLS gets two transport socket
matches — endpoints labelled ``security.istio.io/tlsMode: istio`` (a sidecar is there) and not
DISABLEd by their PeerAuthentication use ISTIO_MUTUAL, the others plaintext. ISTIO_MUTUAL checks
the server's SPIFFE ID against the service accounts of the service's endpoints and takes
``default``/``ROOTCA`` over SDS.

Inbound: STRICT is one TLS chain requiring a client certificate; PERMISSIVE adds plaintext
chains beside it (the tls_inspector tells them apart by transport protocol and ALPN); DISABLE
is plaintext only.
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.common import pack, sds_source
from meshplane.pilot.generators.security.peer_authn import DISABLE, STRICT, mtls_mode
from meshplane.pilot.generators.security.trust_domains import spiffe_ids
from meshplane.pilot.model.config import Endpoint, Service
from meshplane.pilot.model.push_context import PushContext

TLS_MODE_LABEL = "security.istio.io/tlsMode"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
SOCKET_MATCH = "envoy.transport_socket_match"
#: ALPN values Istio's sidecars offer to each other; the PERMISSIVE mTLS chain matches them.
ISTIO_ALPN = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_source())


def _uri_sans(validation: common_pb2.CertificateValidationContext, sans: list[str]) -> None:
    validation.SetInParent()
    for san in sans:
        validation.match_typed_subject_alt_names.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=string_pb2.StringMatcher(exact=san)
            )
        )


def _common(common: tls_pb2.CommonTlsContext, sans: list[str]) -> None:
    common.tls_certificate_sds_secret_configs.append(_sds("default"))
    combined = common.combined_validation_context
    combined.validation_context_sds_secret_config.CopyFrom(_sds("ROOTCA"))
    _uri_sans(combined.default_validation_context, sans)
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3


def istio_mutual(sni: str, sans: list[str]) -> tls_pb2.UpstreamTlsContext:
    """The client side of sidecar-to-sidecar mTLS."""
    ctx = tls_pb2.UpstreamTlsContext(sni=sni)
    _common(ctx.common_tls_context, sans)
    ctx.common_tls_context.alpn_protocols.extend(["istio-peer-exchange", "istio"])
    return ctx


def service_sans(ctx: PushContext, svc: Service, port: int) -> list[str]:
    """The identities a service's servers may present: its ServiceEntry's ``subjectAltNames`` as
    written, then the SPIFFE IDs (in MeshConfig's trust domain and each of its
    ``trustDomainAliases``) of the service accounts running its endpoints (sorted, unique)."""
    accounts = {
        e.service_account for e in ctx.endpoints(svc.hostname, svc.namespace, port) if e.service_account
    }
    spiffe = sorted(sid for sa in accounts for sid in spiffe_ids(ctx.mesh, svc.namespace, sa))
    return list(svc.subject_alt_names) + [s for s in spiffe if s not in svc.subject_alt_names]


def apply_auto_mtls(
    cluster: cluster_pb2.Cluster, ctx: PushContext | None, svc: Service, port: int, sni: str, has_tls: bool
) -> None:
    """Hook for outbound clusters: fill ISTIO_MUTUAL SANs, or add auto-mTLS socket matches."""
    if ctx is None:
        return
    if has_tls:
        _fill_sans(cluster, service_sans(ctx, svc, port))
        return
    if svc.mesh_external or cluster.type != cluster_pb2.Cluster.EDS or not ctx.mesh.traffic.enable_auto_mtls:
        return  # MeshConfig enableAutoMtls: false: plaintext unless a DestinationRule sets TLS
    tls = cluster.transport_socket_matches.add(name="tlsMode-istio")
    tls.match.fields["tlsMode"].string_value = "istio"
    tls.transport_socket.name = TLS_SOCKET
    tls.transport_socket.typed_config.CopyFrom(pack(istio_mutual(sni, service_sans(ctx, svc, port))))
    plain = cluster.transport_socket_matches.add(name="tlsMode-disabled")
    plain.transport_socket.name = "envoy.transport_sockets.raw_buffer"
    plain.transport_socket.typed_config.CopyFrom(pack(raw_buffer_pb2.RawBuffer()))


def _fill_sans(cluster: cluster_pb2.Cluster, sans: list[str]) -> None:
    """ISTIO_MUTUAL from a DestinationRule without subjectAltNames checks the service accounts."""
    sock = cluster.transport_socket
    if sock.name != TLS_SOCKET or not sans:
        return
    up = tls_pb2.UpstreamTlsContext()
    sock.typed_config.Unpack(up)
    combined = up.common_tls_context.combined_validation_context
    if combined.validation_context_sds_secret_config.name != "ROOTCA":
        return  # SIMPLE/MUTUAL: not Istio's certificates
    if combined.default_validation_context.match_typed_subject_alt_names:
        return
    _uri_sans(combined.default_validation_context, sans)
    sock.typed_config.CopyFrom(pack(up))


def endpoint_metadata(ctx: PushContext, ep: Endpoint, namespace: str) -> base_pb2.Metadata | None:
    """``tlsMode: istio`` for endpoints with a sidecar that accepts mTLS on that port."""
    if ep.labels.get(TLS_MODE_LABEL) != "istio":
        return None
    if mtls_mode(ctx, namespace, ep.labels, ep.port) == DISABLE:
        return None
    return istio_mtls_metadata()


def istio_mtls_metadata() -> base_pb2.Metadata:
    """The endpoint metadata that selects the cluster's ``tlsMode-istio`` (ISTIO_MUTUAL) socket."""
    md = base_pb2.Metadata()
    md.filter_metadata[SOCKET_MATCH].CopyFrom(
        struct_pb2.Struct(fields={"tlsMode": struct_pb2.Value(string_value="istio")})
    )
    return md


def downstream_tls() -> tls_pb2.DownstreamTlsContext:
    """The server side: the workload certificate, and a client certificate from the mesh CA required."""
    ctx = tls_pb2.DownstreamTlsContext()
    ctx.require_client_certificate.value = True
    _common(ctx.common_tls_context, [])
    return ctx


def _with_tls(chain: lc.FilterChain) -> lc.FilterChain:
    chain.transport_socket.name = TLS_SOCKET
    chain.transport_socket.typed_config.CopyFrom(pack(downstream_tls()))
    return chain


def inbound_chains(mode: str, build: Callable[[bool], lc.FilterChain]) -> list[lc.FilterChain]:
    """Filter chains for one inbound port; ``build(mtls)`` makes the chain's filters."""
    if mode == DISABLE:
        return [build(False)]
    secure = _with_tls(build(True))
    secure.filter_chain_match.transport_protocol = "tls"
    if mode == STRICT:
        return [secure]
    secure.filter_chain_match.application_protocols.extend(ISTIO_ALPN)
    secure.name = f"{secure.name}_mtls"
    app_tls = build(False)
    app_tls.filter_chain_match.transport_protocol = "tls"
    app_tls.name = f"{app_tls.name}_tls"
    plain = build(False)
    plain.filter_chain_match.transport_protocol = "raw_buffer"
    return [secure, app_tls, plain]


def add_tls_inspector(listener: listener_pb2.Listener) -> None:
    if any(f.name == TLS_INSPECTOR for f in listener.listener_filters):
        return
    listener.listener_filters.add(name=TLS_INSPECTOR).typed_config.CopyFrom(
        pack(tls_inspector_pb2.TlsInspector())
    )
