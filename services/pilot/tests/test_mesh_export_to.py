"""MeshConfig ``defaultServiceExportTo``, ``defaultVirtualServiceExportTo`` and
``defaultDestinationRuleExportTo``: the visibility of objects that set no ``exportTo`` (Istio's
default ``*``); an object's own ``exportTo`` wins."""

from __future__ import annotations

from typing import Any

from meshplane.pilot.generators.clusters import build_clusters
from meshplane.pilot.model.config import Config, Port, Service
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.meshconfig import parse_mesh_config

WEB = "web.shop.svc.cluster.local"
API = "api.shop.svc.cluster.local"


def _cfg(kind: str, name: str, spec: dict[str, Any]) -> Config:
    return Config.parse(kind, "networking.istio.io", "v1", "shop", name, spec)


def _context(mesh: str) -> PushContext:
    services = {"web": Service(WEB, "shop", (Port("http", 80, "HTTP"),))}
    configs = [
        _cfg(
            "ServiceEntry",
            "api",
            {"hosts": [API], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]},
        ),
        _cfg(
            "ServiceEntry",
            "open",
            {"hosts": ["open.example"], "exportTo": ["*"], "ports": [{"number": 80, "name": "http"}]},
        ),
        _cfg(
            "VirtualService", "web", {"hosts": [WEB], "http": [{"route": [{"destination": {"host": API}}]}]}
        ),
        _cfg(
            "DestinationRule", "web", {"host": WEB, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}
        ),
    ]
    return build_push_context(
        "1",
        {f"{c.kind}/{c.name}": c for c in configs},
        services,
        {},
        mesh=parse_mesh_config(mesh, "mesh.yaml"),
    )


def _proxy(ns: str) -> Proxy:
    return parse_proxy(f"sidecar~10.0.0.9~c.{ns}~{ns}.svc.cluster.local", None)


def _seen(ctx: PushContext, ns: str) -> tuple[list[str], int, bool]:
    """(services, VirtualServices, DestinationRule for web) a proxy in ``ns`` sees."""
    hosts = sorted(s.hostname for s in ctx.services_for(_proxy(ns)))
    return hosts, len(ctx.virtual_services(ns, None)), ctx.destination_rule(ns, WEB) is not None


def test_istio_default_is_everywhere() -> None:
    ctx = _context("")
    assert _seen(ctx, "other") == _seen(ctx, "shop") == ([API, "open.example", WEB], 1, True)


def test_mesh_defaults_narrow_objects_without_export_to() -> None:
    ctx = _context(
        "defaultServiceExportTo: ['.']\ndefaultVirtualServiceExportTo: ['~']\n"
        "defaultDestinationRuleExportTo: [shop, team]\n"
    )
    assert _seen(ctx, "shop") == ([API, "open.example", WEB], 0, True)
    assert _seen(ctx, "team") == (["open.example"], 0, True)
    assert _seen(ctx, "other") == (["open.example"], 0, False)
    clusters = {c.name for c in build_clusters(ctx, _proxy("other"))}
    assert "outbound|80||open.example" in clusters and f"outbound|80||{WEB}" not in clusters
