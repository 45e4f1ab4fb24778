"""MeshConfig ``trustDomainAliases``: ISTIO_MUTUAL upstreams accept the server's identity in every
trust domain of the bundle, and AuthorizationPolicy principals in the bundle are expanded to each."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf.json_format import MessageToDict

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.generators.listeners import inbound_listeners

from .helpers import HOST, NS, cart_proxy, cfg, context

MESH = "trustDomain: new.example\ntrustDomainAliases: [old.example, older.example]\n"


def _sans(mesh: str) -> list[str]:
    cluster = next(
        c for c in build_clusters(context(mesh=mesh), cart_proxy()) if c.name == f"outbound|8080||{HOST}"
    )
    up = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket_matches[0].transport_socket.typed_config.Unpack(up)
    default = up.common_tls_context.combined_validation_context.default_validation_context
    return [m.matcher.exact for m in default.match_typed_subject_alt_names]


def test_istio_mutual_sans_accept_every_trust_domain_of_the_bundle() -> None:
    assert _sans(MESH) == sorted(
        f"spiffe://{td}/ns/{NS}/sa/{sa}"
        for td in ("new.example", "old.example", "older.example")
        for sa in ("cart-sa", "legacy-sa")
    )
    assert _sans("trustDomain: new.example\n") == [
        f"spiffe://new.example/ns/{NS}/sa/{sa}" for sa in ("cart-sa", "legacy-sa")
    ]


def _principal_names(mesh: str, spec: dict[str, Any]) -> list[str]:
    ctx = context(cfg("AuthorizationPolicy", "ap", spec), mesh=mesh)
    lis = next(x for x in inbound_listeners(ctx, cart_proxy()) if x.name.endswith("_8080"))
    mgr = hcm.HttpConnectionManager()
    assert lis.filter_chains[0].filters[0].typed_config.Unpack(mgr)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "principalName" in node:
                found.append(node["principalName"].get("exact", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for f in mgr.http_filters:
        if f.name == "envoy.filters.http.rbac":
            walk(MessageToDict(f.typed_config))
    return found


def test_policy_principals_are_expanded_to_each_alias() -> None:
    spec = {
        "rules": [
            {
                "from": [
                    {"source": {"principals": ["old.example/ns/shop/sa/web", "other.example/ns/a/sa/b", "*"]}}
                ],
                "when": [{"key": "source.principal", "notValues": ["spiffe://new.example/ns/x/sa/y"]}],
            }
        ]
    }
    names = _principal_names(MESH, spec)
    web = [f"spiffe://{td}/ns/shop/sa/web" for td in ("new.example", "old.example", "older.example")]
    banned = [f"spiffe://{td}/ns/x/sa/y" for td in ("new.example", "old.example", "older.example")]
    assert names == [*web, "spiffe://other.example/ns/a/sa/b", "", *banned]  # "*": any (a prefix matcher)
    assert _principal_names("trustDomain: new.example\n", spec) == [
        "spiffe://old.example/ns/shop/sa/web",
        "spiffe://other.example/ns/a/sa/b",
        "",
        "spiffe://new.example/ns/x/sa/y",
    ]
