"""A small push context for the security generator tests: one service with two sidecar workloads."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.meshconfig import parse_mesh_config

NS = "shop"
HOST = "cart.shop.svc.cluster.local"
SIDECAR_LABELS = {"app": "cart", "security.istio.io/tlsMode": "istio"}


def cfg(kind: str, name: str, spec: dict[str, Any], ns: str = NS) -> Config:
    group = "networking.istio.io" if kind == "DestinationRule" else "security.istio.io"
    return Config.parse(kind, group, "v1", ns, name, spec)


def context(*configs: Config, jwks: dict[str, str] | None = None, mesh: str = "") -> PushContext:
    """The cart service and its two workloads, with ``configs`` and the MeshConfig YAML ``mesh``."""
    services = {"cart": Service(HOST, NS, (Port("http", 8080, "HTTP"), Port("tcp-db", 5432, "TCP")))}
    workloads = {
        "cart-1": Workload("cart-1", NS, "10.0.0.1", dict(SIDECAR_LABELS), "cart-sa", services=(HOST,)),
        "cart-2": Workload("cart-2", NS, "10.0.0.2", {"app": "cart"}, "legacy-sa", services=(HOST,)),
    }
    ctx = build_push_context(
        "1",
        {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs},
        services,
        workloads,
        mesh=parse_mesh_config(mesh, "mesh.yaml"),
    )
    return ctx.with_jwks(jwks or {})


def cart_proxy(interception_none: bool = True) -> Proxy:
    meta = struct_pb2.Struct()
    meta.update({"LABELS": SIDECAR_LABELS, "INTERCEPTION_MODE": "NONE" if interception_none else "REDIRECT"})
    return parse_proxy(f"sidecar~10.0.0.1~cart-1.{NS}~{NS}.svc.cluster.local", meta)
