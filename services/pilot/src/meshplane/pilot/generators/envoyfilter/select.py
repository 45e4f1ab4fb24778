"""Which EnvoyFilter patches apply to a proxy, in Istio's order, with their values converted.

Selection (Istio's ``EnvoyFilters``/``ShouldAttachPolicy``): filters in the root namespace and in
the proxy's namespace; a filter with ``targetRefs`` never attaches to a sidecar or gateway; a
``workloadSelector`` must be a subset of the proxy's labels. Order (Istio's sort): ``priority``
ascending, then root-namespace filters first, then creation time, then ``name.namespace``.
Patches of one filter run in list order. A patch with ``match.proxy`` applies when its
``proxyVersion`` regex finds the node's ``ISTIO_VERSION`` (never when that is empty) and every
``metadata`` entry equals the node metadata value.
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from collections.abc import Hashable
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from meshplane.pilot.generators.envoyfilter.status import STATUS
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config import models
from meshplane.shared.config.checks.envoy_types import unknown_type_urls
from meshplane.shared.config.models.envoy_filter import ApplyTo, EnvoyConfigObjectPatch, Operation, ProxyMatch
from meshplane.shared.config.models.envoy_filter import PatchContext as Ctx
from meshplane.shared.config.rules.envoy_filter import APPLIED, effective_operation

log = logging.getLogger("meshplane.pilot.generators.envoyfilter")

TYPES: dict[ApplyTo, type[Message]] = {
    ApplyTo.LISTENER: listener_pb2.Listener,
    ApplyTo.LISTENER_FILTER: lc.ListenerFilter,
    ApplyTo.FILTER_CHAIN: lc.FilterChain,
    ApplyTo.NETWORK_FILTER: lc.Filter,
    ApplyTo.HTTP_FILTER: hcm_pb2.HttpFilter,
    ApplyTo.ROUTE_CONFIGURATION: route_pb2.RouteConfiguration,
    ApplyTo.VIRTUAL_HOST: rc.VirtualHost,
    ApplyTo.HTTP_ROUTE: rc.Route,
    ApplyTo.CLUSTER: cluster_pb2.Cluster,
}
#: Longer ``proxyVersion`` patterns match nothing (Istio's limit).
MAX_VERSION_PATTERN = 1024


@dataclass(frozen=True)
class Compiled:
    """One config patch of one EnvoyFilter, its value converted to the Envoy type."""

    source: str
    spec: EnvoyConfigObjectPatch
    apply_to: ApplyTo
    op: Operation
    value: Message | None

    @property
    def context(self) -> Ctx:
        want = self.spec.match.context if self.spec.match is not None else None
        return want or Ctx.ANY


def _attaches(cfg: Config[models.EnvoyFilter], proxy: Proxy) -> bool:
    if cfg.spec.target_refs:
        return False
    selector = cfg.spec.workload_selector
    labels = selector.labels if selector is not None else None
    return not labels or all(proxy.labels.get(k) == v for k, v in labels.items())


def selected(ctx: PushContext, proxy: Proxy) -> list[Config[models.EnvoyFilter]]:
    """The EnvoyFilters that apply to ``proxy``, in Istio's order."""
    found = [
        c
        for c in ctx.of_kind(models.EnvoyFilter)
        if c.namespace in (ctx.root_namespace, proxy.namespace) and _attaches(c, proxy)
    ]
    return sorted(
        found,
        key=lambda c: (
            c.spec.priority or 0,
            c.namespace != ctx.root_namespace,
            c.creation_time,
            f"{c.name}.{c.namespace}",
        ),
    )


@functools.lru_cache(maxsize=256)
def _version_regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def proxy_matches(match: ProxyMatch | None, proxy: Proxy) -> bool:
    """Istio's proxyMatch: the version regex and every metadata entry."""
    if match is None:
        return True
    if match.proxy_version:
        if not proxy.istio_version or len(match.proxy_version) > MAX_VERSION_PATTERN:
            return False
        regex = _version_regex(match.proxy_version)
        if regex is not None and not regex.search(proxy.istio_version):
            return False  # a pattern that does not compile skips the version check, as Istio
    return all(proxy.metadata.get(k) == v for k, v in (match.metadata or {}).items())


def _compile(source: str, cp: EnvoyConfigObjectPatch) -> Compiled | None:
    if cp.apply_to is None or cp.patch is None or cp.patch.operation is None:
        return None
    op = effective_operation(cp.apply_to, cp.patch.operation)
    if op not in APPLIED.get(cp.apply_to, frozenset()):
        return None  # the validator warned: accepted, not applied
    value: Message | None = None
    if op == Operation.REMOVE:
        return Compiled(source, cp, cp.apply_to, op, None)
    if cp.patch.value is None:
        return None
    unknown = unknown_type_urls(cp.patch.value)
    if unknown:
        error(source, cp.apply_to, f"unknown type {', '.join(unknown)} in {cp.apply_to} value")
        return None
    try:
        value = json_format.ParseDict(cp.patch.value, TYPES[cp.apply_to](), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        error(source, cp.apply_to, f"value is not a valid {cp.apply_to}: {str(exc).splitlines()[0]}")
        return None
    return Compiled(source, cp, cp.apply_to, op, value)


#: Each EnvoyFilter's patches converted once per push context, by (namespace, name): a value's
#: conversion is a ``json_format.ParseDict``, and the stage asks per proxy and part on every push.
_CONVERTED: weakref.WeakKeyDictionary[PushContext, dict[tuple[str, str], list[Compiled | None]]] = (
    weakref.WeakKeyDictionary()
)


def _converted(ctx: PushContext, cfg: Config[models.EnvoyFilter]) -> list[Compiled | None]:
    """``cfg``'s patches, each converted (None: not applied, or skipped and counted)."""
    by_filter = _CONVERTED.setdefault(ctx, {})
    found = by_filter.get((cfg.namespace, cfg.name))
    if found is None:
        source = f"{cfg.namespace}/{cfg.name}"
        found = by_filter[(cfg.namespace, cfg.name)] = [
            _compile(source, cp) for cp in cfg.spec.config_patches or []
        ]
    return found


def compiled(ctx: PushContext, proxy: Proxy, kinds: frozenset[ApplyTo]) -> list[Compiled]:
    """The proxy's patches of ``kinds``, in order (those whose ``match.proxy`` fails left out)."""
    if not ctx.of_kind(models.EnvoyFilter):
        return []  # the common case, asked per proxy and part on every push: skip the stage
    out = []
    for cfg in selected(ctx, proxy):
        for cp, c in zip(cfg.spec.config_patches or [], _converted(ctx, cfg), strict=True):
            if c is None or cp.apply_to not in kinds:
                continue
            if proxy_matches(cp.match.proxy if cp.match is not None else None, proxy):
                out.append(c)
    return out


def variant(ctx: PushContext, proxy: Proxy) -> Hashable:
    """What, beyond a proxy's scope (namespace, labels, type), decides its patches: which
    ``match.proxy`` patches match it. Empty, so proxies keep sharing, unless one is written."""
    filters = ctx.of_kind(models.EnvoyFilter)
    if not any(
        cp.match is not None and cp.match.proxy is not None
        for c in filters
        for cp in c.spec.config_patches or []
    ):
        return ()
    hits = []
    for cfg in selected(ctx, proxy):
        for i, cp in enumerate(cfg.spec.config_patches or []):
            pm = cp.match.proxy if cp.match is not None else None
            if pm is not None and proxy_matches(pm, proxy):
                hits.append((cfg.namespace, cfg.name, cfg.resource_version, i))
    return tuple(hits)


def context_ok(patch: Compiled, context: Ctx) -> bool:
    return patch.context in (Ctx.ANY, context)


def listener_context(proxy: Proxy, inbound: bool) -> Ctx:
    if proxy.type is ProxyType.ROUTER:
        return Ctx.GATEWAY
    return Ctx.SIDECAR_INBOUND if inbound else Ctx.SIDECAR_OUTBOUND


def error(source: str, apply_to: ApplyTo, what: str) -> None:
    """A patch skipped: logged and counted (``pilot_envoy_filter_status{result="error"}``)."""
    log.warning("envoyfilter %s: %s; patch skipped", source, what)
    STATUS.error(source, apply_to)
