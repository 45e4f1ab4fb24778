"""Route-class patches: ``ROUTE_CONFIGURATION`` (MERGE), ``VIRTUAL_HOST`` (MERGE, ADD, REMOVE,
REPLACE) and ``HTTP_ROUTE`` (MERGE, ADD, REMOVE, INSERT_BEFORE/AFTER/FIRST), matched as Istio's
``rc_patch.go`` matches them.

Route configurations are matched by name and port: a sidecar's are named by port (``9080``) or
``inbound|<port>||``; a gateway's ``http.<port>`` or ``https.<port>.<portName>.<gateway>.<ns>``,
which also give ``portName`` and ``gateway`` (``ns/name``). Virtual hosts by ``name`` and
``domainName`` (one of the host's domains), routes by ``name`` and ``action``.
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from meshplane.pilot.generators.envoyfilter import ops
from meshplane.pilot.generators.envoyfilter.rules import route_problems
from meshplane.pilot.generators.envoyfilter.select import Compiled
from meshplane.shared.config.models.envoy_filter import ApplyTo, Operation, RouteConfigurationMatch
from meshplane.shared.config.models.envoy_filter import PatchContext as Ctx

KINDS = frozenset({ApplyTo.ROUTE_CONFIGURATION, ApplyTo.VIRTUAL_HOST, ApplyTo.HTTP_ROUTE})
_ACTIONS = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}


def _rcm(patch: Compiled) -> RouteConfigurationMatch | None:
    return patch.spec.match.route_configuration if patch.spec.match is not None else None


def gateway_route_name(name: str) -> tuple[int, str, str]:
    """(port, port name, ``ns/gateway``) of a gateway RDS name (Istio's ParseGatewayRDSRouteName)."""
    parts = name.split(".")
    if name.startswith("http.") and len(parts) == 2 and parts[1].isdigit():
        return int(parts[1]), "", ""
    if name.startswith("https.") and len(parts) >= 5 and parts[1].isdigit():
        return int(parts[1]), parts[2], f"{parts[-1]}/{'.'.join(parts[3:-1])}"
    return 0, "", ""


def _sidecar_port(name: str) -> int:
    if name.startswith("inbound|"):
        port = name.split("|")[1]
        return int(port) if port.isdigit() else 0
    return int(name) if name.isdigit() else 0


def config_matches(patch: Compiled, cfg: route_pb2.RouteConfiguration, context: Ctx) -> bool:
    m = _rcm(patch)
    if m is None:
        return True
    if m.name and m.name != cfg.name:
        return False
    if context != Ctx.GATEWAY:
        return not m.port_number or m.port_number == _sidecar_port(cfg.name)
    port, port_name, gateway = gateway_route_name(cfg.name)
    if m.port_number and m.port_number != port:
        return False
    if m.port_name and m.port_name != port_name:
        return False
    return not m.gateway or m.gateway == gateway


def _vhost_matches(patch: Compiled, vh: rc.VirtualHost) -> bool:
    m = _rcm(patch)
    vm = m.vhost if m is not None else None
    if vm is None:
        return True
    if vm.name and vm.name != vh.name:
        return False
    return not vm.domain_name or vm.domain_name in vh.domains


def _route_target(patch: Compiled) -> Callable[[rc.Route], bool] | None:
    """Which routes the patch names (None: it names none)."""
    m = _rcm(patch)
    rm = m.vhost.route if m is not None and m.vhost is not None else None
    if rm is None or not (rm.name or rm.action):
        return None
    action = _ACTIONS.get(rm.action or "ANY")

    def hit(route: rc.Route) -> bool:
        if rm.name and rm.name != route.name:
            return False
        return action is None or route.WhichOneof("action") == action

    return hit


def _routes(patch: Compiled, vh: rc.VirtualHost) -> None:
    routes = list(vh.routes)
    target = _route_target(patch)
    if patch.op == Operation.MERGE:
        for route in routes:
            if target is None or target(route):
                ops.merge(route, ops.value(patch, rc.Route))
        return
    if patch.op == Operation.REMOVE:
        ops.replace_list(vh.routes, [r for r in routes if target is not None and not target(r)])
        return
    if patch.op == Operation.INSERT_FIRST and target is not None and not any(map(target, routes)):
        return  # FIRST with a route match inserts only where some route matches
    ops.replace_list(vh.routes, ops.edit_list(routes, patch, target))


def patch_config(patch: Compiled, cfg: route_pb2.RouteConfiguration) -> None:
    """One route-class patch applied to one (matching) route configuration."""
    if patch.apply_to == ApplyTo.ROUTE_CONFIGURATION:
        ops.merge(cfg, ops.value(patch, route_pb2.RouteConfiguration))
    elif patch.apply_to == ApplyTo.VIRTUAL_HOST:
        vhosts = ops.object_op(
            patch, list(cfg.virtual_hosts), True, rc.VirtualHost, lambda v: _vhost_matches(patch, v)
        )
        ops.replace_list(cfg.virtual_hosts, vhosts)
    else:
        for vh in cfg.virtual_hosts:
            if _vhost_matches(patch, vh):
                _routes(patch, vh)


def apply_for(
    context: Ctx,
) -> Callable[[Compiled, list[route_pb2.RouteConfiguration]], list[route_pb2.RouteConfiguration]]:
    def apply(patch: Compiled, out: list[route_pb2.RouteConfiguration]) -> list[route_pb2.RouteConfiguration]:
        for cfg in out:
            if config_matches(patch, cfg, context):
                patch_config(patch, cfg)
        return out

    return apply


def problems(changed: list[route_pb2.RouteConfiguration], _: list[route_pb2.RouteConfiguration]) -> list[str]:
    return [p for cfg in changed for p in route_problems(cfg)]
