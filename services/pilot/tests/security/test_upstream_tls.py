"""DestinationRule SIMPLE/MUTUAL TLS, CIDR ServiceEntries and Unix-socket endpoints as Pilot
builds them: the shapes Envoy accepts (checked against a real Envoy in
``tests/integration/pilot/test_upstream_tls.py``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.config import Config, Port, Service
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context

NS = "shop"
HOST = "api.example.com"


def _ctx(*configs: Config) -> PushContext:
    api = Service(HOST, NS, (Port("https", 443, "TLS"),), resolution="DNS", mesh_external=True)
    return build_push_context("1", {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}, {"api": api}, {})


def _proxy(kind: str = "sidecar", interception: str = "REDIRECT") -> Proxy:
    meta = struct_pb2.Struct()
    meta.update({"INTERCEPTION_MODE": interception})
    return parse_proxy(f"{kind}~10.0.0.9~client-1.{NS}~{NS}.svc.cluster.local", meta)


def _dr(tls: dict[str, Any], **extra: Any) -> Config:
    return Config.parse(
        "DestinationRule",
        "networking.istio.io",
        "v1",
        NS,
        "api",
        {"host": HOST, **extra, "trafficPolicy": {"tls": tls}},
    )


def _upstream(*configs: Config, kind: str = "sidecar") -> tls_pb2.UpstreamTlsContext:
    clusters = build_clusters(_ctx(*configs), _proxy(kind))
    cluster = next(c for c in clusters if c.name == f"outbound|443||{HOST}")
    ctx = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(ctx)
    return ctx


def _roots(ctx: tls_pb2.UpstreamTlsContext) -> str:
    return str(ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name)


def test_files_become_istio_sds_names_never_file_names() -> None:
    ctx = _upstream(
        _dr(
            {
                "mode": "MUTUAL",
                "caCertificates": "/etc/ca.pem",
                "clientCertificate": "/c.pem",
                "privateKey": "/k.pem",
            }
        )
    )
    common = ctx.common_tls_context
    assert _roots(ctx) == "file-root:/etc/ca.pem"
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["file-cert:/c.pem~/k.pem"]
    assert not common.tls_certificates and not common.HasField("validation_context")
    assert ctx.sni == HOST  # Istio's default: the host


def test_sans_without_a_ca_use_the_system_roots() -> None:
    ctx = _upstream(
        _dr({"mode": "SIMPLE", "subjectAltNames": ["api.example.com", "spiffe://x/ns/a/sa/b"], "sni": "s"})
    )
    assert _roots(ctx) == "file-root:system"
    validation = ctx.common_tls_context.combined_validation_context.default_validation_context
    sans = validation.match_typed_subject_alt_names
    assert [(s.san_type, s.matcher.exact) for s in sans] == [
        (common_pb2.SubjectAltNameMatcher.DNS, "api.example.com"),
        (common_pb2.SubjectAltNameMatcher.URI, "spiffe://x/ns/a/sa/b"),
    ]
    assert ctx.sni == "s"


def test_insecure_skip_verify_drops_verification_and_sans() -> None:
    ctx = _upstream(
        _dr({"mode": "SIMPLE", "insecureSkipVerify": True, "subjectAltNames": ["a"], "caCertificates": "/ca"})
    )
    common = ctx.common_tls_context
    assert not common.HasField("combined_validation_context") and not common.HasField("validation_context")


def test_credential_name_for_gateways_and_selected_sidecars_only(caplog: pytest.LogCaptureFixture) -> None:
    tls = {"mode": "MUTUAL", "credentialName": "api-cred"}
    gw = _upstream(_dr(tls), kind="router")
    assert _roots(gw) == "kubernetes://api-cred-cacert"
    assert [s.name for s in gw.common_tls_context.tls_certificate_sds_secret_configs] == [
        "kubernetes://api-cred"
    ]
    selected = _upstream(_dr(tls, workloadSelector={"matchLabels": {"app": "client"}}))
    assert _roots(selected) == "kubernetes://api-cred-cacert"
    with caplog.at_level(logging.WARNING):
        plain = _upstream(_dr(tls))
    assert _roots(plain) == "file-root:system"
    assert not plain.common_tls_context.tls_certificate_sds_secret_configs
    assert "credentialName 'api-cred' is ignored" in caplog.text


def test_cidr_service_entry_is_a_chain_on_the_wildcard_listener() -> None:
    cidr = Service(
        "wiki.example.com",
        NS,
        (Port("tcp", 9999, "TCP"),),
        resolution="NONE",
        addresses=("91.198.174.192/27",),
    )
    plain = Service("db.example.com", NS, (Port("tcp", 9999, "TCP"),), resolution="DNS")
    ctx = build_push_context("1", {}, {"wiki": cidr, "db": plain}, {})
    listeners = build_listeners(ctx, _proxy())
    assert not [lis.name for lis in listeners if "/" in lis.name or "/" in lis.address.socket_address.address]
    lis = next(lis for lis in listeners if lis.name == "0.0.0.0_9999")
    ranges = [
        [(r.address_prefix, r.prefix_len.value) for r in c.filter_chain_match.prefix_ranges]
        for c in lis.filter_chains
    ]
    assert sorted(ranges) == [[], [("91.198.174.192", 27)]]  # the CIDR's chain beside db's catch-all


def test_unix_socket_endpoints_are_pipes() -> None:
    svc = Service(
        "uds.example.com",
        NS,
        (Port("tcp", 7000, "TCP"),),
        resolution="STATIC",
        static_endpoints=(("unix:///var/run/example/socket", {}, {}, "", 1),),
    )
    ctx = build_push_context("1", {}, {"uds": svc}, {})
    cla = build_load_assignment(ctx, "outbound|7000||uds.example.com")
    (ep,) = [lb.endpoint for group in cla.endpoints for lb in group.lb_endpoints]
    assert ep.address.pipe.path == "/var/run/example/socket"
    assert not ep.address.HasField("socket_address")
    assert build_clusters(ctx, _proxy())[0].type == cluster_pb2.Cluster.EDS


def test_cidr_is_not_a_host_name_on_http_routes() -> None:
    svc = Service(
        "wiki.example.com", NS, (Port("http", 80, "HTTP"),), addresses=("91.198.174.192/27", "10.9.9.9")
    )
    route = build_route(build_push_context("1", {}, {"wiki": svc}, {}), _proxy(), "80")
    names = [d for vh in route.virtual_hosts for d in vh.domains]
    assert "wiki.example.com" in names and "10.9.9.9" in names
    assert not [d for d in names if "/" in d]


def test_unix_socket_endpoints_of_a_dns_service_entry_make_a_static_cluster() -> None:
    svc = Service(
        "uds.example.com",
        NS,
        (Port("tcp", 7000, "TCP"),),
        resolution="DNS",
        static_endpoints=(
            ("unix:///var/run/example/socket", {}, {}, "", 1),
            ("other.example.com", {}, {}, "", 1),
        ),
    )
    (cluster,) = [
        c for c in build_clusters(build_push_context("1", {}, {"uds": svc}, {}), _proxy()) if "uds" in c.name
    ]
    assert cluster.type == cluster_pb2.Cluster.STATIC
    (ep,) = [lb.endpoint for group in cluster.load_assignment.endpoints for lb in group.lb_endpoints]
    assert ep.address.pipe.path == "/var/run/example/socket"


def test_http2_clusters_offer_h2_over_simple_tls() -> None:
    grpc = Service(
        "rpc.example.com", NS, (Port("grpc", 443, "GRPC"), Port("tcp", 444, "TCP")), resolution="DNS"
    )
    dr = Config.parse(
        "DestinationRule",
        "networking.istio.io",
        "v1",
        NS,
        "rpc",
        {"host": "rpc.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}},
    )
    clusters = {
        c.name: c for c in build_clusters(build_push_context("1", {"dr": dr}, {"rpc": grpc}, {}), _proxy())
    }
    alpn = {}
    for port in (443, 444):
        ctx = tls_pb2.UpstreamTlsContext()
        assert clusters[f"outbound|{port}||rpc.example.com"].transport_socket.typed_config.Unpack(ctx)
        alpn[port] = list(ctx.common_tls_context.alpn_protocols)
    assert alpn == {443: ["h2"], 444: []}


def test_http_clusters_take_sni_from_the_host_header_unless_given() -> None:
    web = Service("web.example.com", NS, (Port("http", 80, "HTTP"), Port("tcp", 81, "TCP")), resolution="DNS")
    specs = {
        "auto": {"mode": "SIMPLE"},
        "sans": {"mode": "SIMPLE", "subjectAltNames": ["web.example.com"]},
        "fixed": {"mode": "SIMPLE", "sni": "web.example.com"},
    }
    seen = {}
    for name, tls in specs.items():
        dr = Config.parse(
            "DestinationRule",
            "networking.istio.io",
            "v1",
            NS,
            name,
            {"host": web.hostname, "trafficPolicy": {"tls": tls}},
        )
        clusters = {
            c.name: c for c in build_clusters(build_push_context("1", {"dr": dr}, {"web": web}, {}), _proxy())
        }
        options = clusters["outbound|80||web.example.com"].typed_extension_protocol_options
        opts = http_protocol_options_pb2.HttpProtocolOptions()
        if options:
            options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(opts)
        up = opts.upstream_http_protocol_options
        seen[name] = (up.auto_sni, up.auto_san_validation)
        assert not clusters["outbound|81||web.example.com"].typed_extension_protocol_options  # TCP: fixed SNI
    assert seen == {"auto": (True, True), "sans": (True, False), "fixed": (False, False)}
