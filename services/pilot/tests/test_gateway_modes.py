"""Gateway server TLS modes and L4 routes as generated listeners (Envoy itself drives them in
``tests/integration/pilot/test_gateway_tls.py``; these pin the cases the integration test does not run)."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.endpoints import build_load_assignment
from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.generators.routes import build_route
from meshplane.pilot.model.config import Config, Port, Service
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.model.push_context import build_push_context

DB = "db.default.svc.cluster.local"


def _router() -> Any:
    md = struct_pb2.Struct()
    md.update({"LABELS": {"istio": "ingressgateway"}})
    return parse_proxy("router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local", md)


def _ctx(servers: list[dict[str, Any]], *vs: dict[str, Any]) -> Any:
    configs = [
        Config.parse(
            "Gateway",
            "networking.istio.io",
            "v1",
            "default",
            "gw",
            {"selector": {"istio": "ingressgateway"}, "servers": servers},
        )
    ]
    configs += [
        Config.parse("VirtualService", "networking.istio.io", "v1", "default", f"vs{i}", spec)
        for i, spec in enumerate(vs)
    ]
    services = {"db": Service(DB, "default", (Port("tcp", 5432, "TCP"),))}
    return build_push_context("1", {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}, services, {})


def _listeners(servers: list[dict[str, Any]], *vs: dict[str, Any]) -> dict[str, listener_pb2.Listener]:
    return {x.name: x for x in build_listeners(_ctx(servers, *vs), _router())}


def _server(
    number: int, protocol: str, hosts: list[str], tls: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "port": {"number": number, "name": f"p{number}", "protocol": protocol},
        "hosts": hosts,
    }
    return {**out, "tls": tls} if tls else out


def _downstream(chain: Any) -> tls_pb2.DownstreamTlsContext:
    down = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(down)
    return down


def _tcp(chain: Any) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(proxy)
    return proxy


def test_istio_mutual_and_optional_mutual_validation() -> None:
    lis = _listeners(
        [
            _server(443, "HTTPS", ["a.example.com"], {"mode": "ISTIO_MUTUAL"}),
            _server(8443, "HTTPS", ["b.example.com"], {"mode": "OPTIONAL_MUTUAL", "credentialName": "b"}),
        ]
    )
    istio = _downstream(lis["0.0.0.0_443"].filter_chains[0])
    assert istio.require_client_certificate.value is True
    assert istio.common_tls_context.tls_certificate_sds_secret_configs[0].name == "default"
    assert (
        istio.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name
        == "ROOTCA"
    )
    optional = _downstream(lis["0.0.0.0_8443"].filter_chains[0])
    assert optional.require_client_certificate.value is False
    combined = optional.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "kubernetes://b-cacert"
    assert combined.HasField("default_validation_context")  # Envoy rejects the listener without it


def test_tls_server_terminates_then_proxies_tcp_without_h2() -> None:
    lis = _listeners(
        [_server(9443, "TLS", ["db.example.com"], {"mode": "SIMPLE", "credentialName": "db"})],
        {
            "hosts": ["db.example.com"],
            "gateways": ["gw"],
            "tcp": [{"route": [{"destination": {"host": "db"}}]}],
        },
    )
    chain = lis["0.0.0.0_9443"].filter_chains[0]
    assert list(chain.filter_chain_match.server_names) == ["db.example.com"]
    assert list(_downstream(chain).common_tls_context.alpn_protocols) == []
    assert _tcp(chain).cluster == f"outbound|9443||{DB}"


def test_passthrough_has_no_catch_all_and_ignores_foreign_sni() -> None:
    route = [{"destination": {"host": "db", "port": {"number": 5432}}}]
    lis = _listeners(
        [_server(443, "TLS", ["*.example.com"], {"mode": "PASSTHROUGH"})],
        {
            "hosts": ["*.example.com", "other.org"],
            "gateways": ["gw"],
            "tls": [
                {"match": [{"sniHosts": ["db.example.com"]}], "route": route},
                {"match": [{"sniHosts": ["other.org"]}], "route": route},
            ],
            "tcp": [{"route": route}],
        },
    )
    chains = lis["0.0.0.0_443"].filter_chains
    assert [list(c.filter_chain_match.server_names) for c in chains] == [["db.example.com"]]
    assert _tcp(chains[0]).cluster == f"outbound|5432||{DB}"


def test_tcp_route_honours_port_and_gateway_matches() -> None:
    lis = _listeners(
        [_server(5432, "TCP", ["*"]), _server(6000, "TCP", ["*"])],
        {
            "hosts": ["*"],
            "gateways": ["gw"],
            "tcp": [
                {
                    "match": [{"port": 6000, "gateways": ["elsewhere"]}],
                    "route": [{"destination": {"host": "nope"}}],
                },
                {"match": [{"port": 5432}], "route": [{"destination": {"host": "db"}}]},
            ],
        },
    )
    assert _tcp(lis["0.0.0.0_5432"].filter_chains[0]).cluster == f"outbound|5432||{DB}"
    assert "0.0.0.0_6000" not in lis  # no route for it: no listener that would accept and drop


def test_server_tls_protocol_versions_and_cipher_suites() -> None:
    tls = {
        "mode": "SIMPLE",
        "credentialName": "c",
        "minProtocolVersion": "TLSV1_2",
        "maxProtocolVersion": "TLSV1_3",
        "cipherSuites": ["ECDHE-ECDSA-AES256-GCM-SHA384"],
    }
    lis = _listeners([_server(443, "HTTPS", ["a.example.com"], tls)])
    params = _downstream(lis["0.0.0.0_443"].filter_chains[0]).common_tls_context.tls_params
    assert params.tls_minimum_protocol_version == params.TLSv1_2
    assert params.tls_maximum_protocol_version == params.TLSv1_3
    assert list(params.cipher_suites) == ["ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_auto_passthrough_sni_cluster_chain_and_sni_dnat_clusters() -> None:
    servers = [_server(15443, "TLS", ["*.local"], {"mode": "AUTO_PASSTHROUGH"})]
    ctx = _ctx(servers)
    chain = {x.name: x for x in build_listeners(ctx, _router())}["0.0.0.0_15443"].filter_chains[0]
    assert list(chain.filter_chain_match.server_names) == ["*.local"]
    assert [f.name for f in chain.filters] == [
        "envoy.filters.network.sni_cluster",
        "envoy.filters.network.tcp_proxy",
    ]
    clusters = {c.name: c for c in build_clusters(ctx, _router())}
    dnat = clusters[f"outbound_.5432_._.{DB}"]
    assert dnat.eds_cluster_config.service_name == dnat.name
    assert not dnat.HasField("transport_socket") and not dnat.transport_socket_matches
    assert f"outbound|5432||{DB}" in clusters
    assert build_load_assignment(ctx, dnat.name).cluster_name == dnat.name
    # without an AUTO_PASSTHROUGH server there are no SNI-named clusters
    plain = _ctx([_server(443, "TLS", ["*.local"], {"mode": "PASSTHROUGH"})])
    assert not [c for c in build_clusters(plain, _router()) if c.name.startswith("outbound_.")]


def test_server_hosts_scoped_by_namespace_bind_only_that_namespace() -> None:
    gw = {
        "selector": {"istio": "ingressgateway"},
        "servers": [_server(80, "HTTP", ["./a.example.com", "team/b.example.com", "*/c.example.com"])],
    }
    configs = [Config.parse("Gateway", "networking.istio.io", "v1", "default", "gw", gw)]
    for ns in ("default", "team", "other"):
        spec = {
            "hosts": ["a.example.com", "b.example.com", "c.example.com"],
            "gateways": ["default/gw"],
            "http": [{"route": [{"destination": {"host": DB}}]}],
        }
        configs.append(Config.parse("VirtualService", "networking.istio.io", "v1", ns, f"vs-{ns}", spec))
    ctx = build_push_context("1", {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}, {}, {})
    vhosts = build_route(ctx, _router(), "http.80").virtual_hosts
    owners = {vh.name: vh.metadata.filter_metadata["istio"].fields["config"].string_value for vh in vhosts}
    assert set(owners) == {"a.example.com:80", "b.example.com:80", "c.example.com:80"}
    assert "/default/" in owners["a.example.com:80"]  # ./ = the gateway's own namespace
    assert "/team/" in owners["b.example.com:80"], owners


def test_a_sidecar_with_gateway_labels_gets_no_gateway_servers() -> None:
    ctx = _ctx([_server(8443, "TCP", ["*"])])
    assert [g.name for g in ctx.gateways_for(_router())] == ["gw"]
    md = struct_pb2.Struct()
    md.update({"LABELS": {"istio": "ingressgateway"}})
    sidecar = parse_proxy("sidecar~10.0.0.2~app.default~default.svc.cluster.local", md)
    assert ctx.gateways_for(sidecar) == []
