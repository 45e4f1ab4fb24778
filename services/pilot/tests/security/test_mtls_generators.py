"""Auto mTLS on outbound clusters and endpoints, and PeerAuthentication on inbound filter chains."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.listeners import inbound_listeners

from .helpers import HOST, NS, cart_proxy, cfg, context

CART = f"outbound|8080||{HOST}"


def _cluster(ctx: Any, name: str = CART) -> cluster_pb2.Cluster:
    return next(c for c in build_clusters(ctx, cart_proxy()) if c.name == name)


def _upstream(any_msg: Any) -> tls_pb2.UpstreamTlsContext:
    up = tls_pb2.UpstreamTlsContext()
    assert any_msg.Unpack(up)
    return up


def test_auto_mtls_socket_matches_with_istio_sni_and_spiffe_sans() -> None:
    cluster = _cluster(context())
    names = [m.name for m in cluster.transport_socket_matches]
    assert names == ["tlsMode-istio", "tlsMode-disabled"]
    istio = cluster.transport_socket_matches[0]
    assert istio.match.fields["tlsMode"].string_value == "istio"
    up = _upstream(istio.transport_socket.typed_config)
    assert up.sni == f"outbound_.8080_._.{HOST}"
    common = up.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"
    sans = [m.matcher.exact for m in combined.default_validation_context.match_typed_subject_alt_names]
    assert sans == [
        f"spiffe://cluster.local/ns/{NS}/sa/cart-sa",
        f"spiffe://cluster.local/ns/{NS}/sa/legacy-sa",
    ]
    assert common.tls_params.tls_maximum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert "h2" not in common.alpn_protocols  # the app may speak HTTP/1.1 only


def test_destination_rule_tls_wins_over_auto_mtls() -> None:
    off = cfg("DestinationRule", "cart", {"host": HOST, "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
    assert not _cluster(context(off)).transport_socket_matches
    mutual = cfg(
        "DestinationRule", "cart", {"host": HOST, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    )
    cluster = _cluster(context(mutual))
    assert not cluster.transport_socket_matches
    up = _upstream(cluster.transport_socket.typed_config)
    default = up.common_tls_context.combined_validation_context.default_validation_context
    sans = default.match_typed_subject_alt_names
    assert [s.matcher.exact for s in sans][0] == f"spiffe://cluster.local/ns/{NS}/sa/cart-sa"


def test_mesh_enable_auto_mtls_false_sends_plaintext_unless_a_destination_rule_sets_tls() -> None:
    off = "enableAutoMtls: false\n"
    cluster = _cluster(context(mesh=off))
    assert not cluster.transport_socket_matches
    assert not cluster.HasField("transport_socket")  # plaintext to every endpoint
    mutual = cfg(
        "DestinationRule", "cart", {"host": HOST, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    )
    cluster = _cluster(context(mutual, mesh=off))
    assert _upstream(cluster.transport_socket.typed_config).sni == f"outbound_.8080_._.{HOST}"
    on = _cluster(context(mesh="enableAutoMtls: true\n"))
    assert [m.name for m in on.transport_socket_matches] == ["tlsMode-istio", "tlsMode-disabled"]


def test_endpoints_with_sidecar_marked_for_mtls_unless_disabled() -> None:
    def marked(ctx: Any) -> dict[str, bool]:
        cla = build_load_assignment(ctx, CART)
        return {
            ep.endpoint.address.socket_address.address: "envoy.transport_socket_match"
            in ep.metadata.filter_metadata
            for group in cla.endpoints
            for ep in group.lb_endpoints
        }

    assert marked(context()) == {"10.0.0.1": True, "10.0.0.2": False}
    off = cfg(
        "PeerAuthentication",
        "off",
        {"selector": {"matchLabels": {"app": "cart"}}, "mtls": {"mode": "DISABLE"}},
    )
    assert marked(context(off)) == {"10.0.0.1": False, "10.0.0.2": False}


def _inbound(ctx: Any, port: int = 8080) -> listener_pb2.Listener:
    return next(lis for lis in inbound_listeners(ctx, cart_proxy()) if lis.name.endswith(f"_{port}"))


def _mode(mode: str) -> Any:
    return cfg("PeerAuthentication", "default", {"mtls": {"mode": mode}})


def test_strict_inbound_is_tls_only_and_requires_client_certificate() -> None:
    lis = _inbound(context(_mode("STRICT")))
    assert len(lis.filter_chains) == 1
    chain = lis.filter_chains[0]
    assert chain.filter_chain_match.transport_protocol == "tls"
    down = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(down)
    assert down.require_client_certificate.value
    assert (
        down.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name
        == "ROOTCA"
    )
    assert [f.name for f in lis.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    mgr = hcm.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(mgr)
    assert mgr.forward_client_cert_details == hcm.HttpConnectionManager.SANITIZE_SET
    assert mgr.set_current_client_cert_details.uri


def test_permissive_inbound_has_mtls_and_plaintext_chains() -> None:
    lis = _inbound(context())
    matches = [
        (c.filter_chain_match.transport_protocol, bool(c.transport_socket.name)) for c in lis.filter_chains
    ]
    assert matches == [("tls", True), ("tls", False), ("raw_buffer", False)]
    assert "istio" in lis.filter_chains[0].filter_chain_match.application_protocols
    assert len({c.name for c in lis.filter_chains}) == 3


def test_disable_inbound_is_plaintext_without_inspector() -> None:
    lis = _inbound(context(_mode("DISABLE")))
    assert len(lis.filter_chains) == 1
    assert not lis.filter_chains[0].transport_socket.name
    assert not lis.listener_filters


def test_virtual_inbound_chains_keep_destination_port() -> None:
    lis = inbound_listeners(context(_mode("STRICT")), cart_proxy(interception_none=False))[0]
    assert lis.name == "virtualInbound"
    ports = {c.filter_chain_match.destination_port.value for c in lis.filter_chains}
    assert ports == {8080, 5432}
    assert all(c.filter_chain_match.transport_protocol == "tls" for c in lis.filter_chains)
