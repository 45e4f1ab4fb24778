"""EnvoyFilter patches applied to a proxy's generated listeners and clusters, as Istio applies them.

Selection (Istio's ``EnvoyFilters``/``ShouldAttachPolicy``): filters in the root namespace and in
the proxy's namespace; a filter with ``targetRefs`` never attaches to a sidecar or gateway; a
``workloadSelector`` must be a subset of the proxy's labels. Order: priority, then root-namespace
filters first, then ``namespace/name`` (meshplane keeps no creation time). Patches run in list order.

The patch stage runs on each generated part before it is packed, so the packed resources, their
versions and the transport's caches all see the patched config. Both the selection and the
contexts depend only on what a part is keyed by (namespace, labels, proxy type), so a patched
part is still shared correctly. ``match.proxy`` (version/metadata) is not applied (the validator
warns).

Applied: ``LISTENER`` MERGE/ADD/REMOVE, ``NETWORK_FILTER`` and ``HTTP_FILTER`` MERGE/ADD/REMOVE/
INSERT_BEFORE/INSERT_AFTER/INSERT_FIRST/REPLACE, ``CLUSTER`` MERGE/ADD/REMOVE. A patch value that
does not convert to its Envoy type, or a result Envoy would reject (an HTTP filter after the
router), is skipped for that object, logged and counted in ``PATCH_ERRORS`` (exported as
``pilot_envoyfilter_patch_errors``); the generated object is kept unchanged.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import Proxy, ProxyType
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config import models
from meshplane.shared.config.checks.envoy_types import unknown_type_urls
from meshplane.shared.config.models.envoy_filter import ApplyTo, EnvoyConfigObjectPatch, Operation
from meshplane.shared.config.models.envoy_filter import PatchContext as Ctx
from meshplane.shared.config.rules.envoy_filter import APPLIED, effective_operation

log = logging.getLogger(__name__)

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
#: Kinds whose change re-generates what this stage patches.
KINDS = frozenset({"EnvoyFilter"})
_TYPES: dict[ApplyTo, type[Message]] = {
    ApplyTo.LISTENER: listener_pb2.Listener,
    ApplyTo.CLUSTER: cluster_pb2.Cluster,
    ApplyTo.NETWORK_FILTER: lc.Filter,
    ApplyTo.HTTP_FILTER: hcm_pb2.HttpFilter,
}

#: Patches skipped since start, by ``namespace/name`` of the EnvoyFilter.
PATCH_ERRORS: collections.Counter[str] = collections.Counter()
_errors_lock = threading.Lock()

M = TypeVar("M", bound=Message)


def _error(source: str, what: str) -> None:
    log.warning("envoyfilter %s: %s; patch skipped", source, what)
    with _errors_lock:
        PATCH_ERRORS[source] += 1


@dataclass(frozen=True)
class Compiled:
    """One config patch of one EnvoyFilter, its value converted to the Envoy type."""

    source: str
    spec: EnvoyConfigObjectPatch
    apply_to: ApplyTo
    op: Operation
    value: Message | None


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
        key=lambda c: (c.spec.priority or 0, c.namespace != ctx.root_namespace, c.namespace, c.name),
    )


def _compile(source: str, cp: EnvoyConfigObjectPatch) -> Compiled | None:
    if cp.apply_to is None or cp.patch is None or cp.patch.operation is None:
        return None
    op = effective_operation(cp.apply_to, cp.patch.operation)
    if op not in APPLIED.get(cp.apply_to, frozenset()):
        return None  # the validator warned: accepted, not applied
    value: Message | None = None
    if cp.patch.value is not None and op != Operation.REMOVE:
        unknown = unknown_type_urls(cp.patch.value)
        if unknown:
            _error(source, f"unknown type {', '.join(unknown)} in {cp.apply_to} value")
            return None
        try:
            value = json_format.ParseDict(cp.patch.value, _TYPES[cp.apply_to](), ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            _error(source, f"value is not a valid {cp.apply_to}: {str(exc).splitlines()[0]}")
            return None
    elif op != Operation.REMOVE:
        return None
    return Compiled(source, cp, cp.apply_to, op, value)


def compiled(ctx: PushContext, proxy: Proxy, kinds: frozenset[ApplyTo]) -> list[Compiled]:
    if not ctx.of_kind(models.EnvoyFilter):
        return []  # the common case, asked per proxy and part on every push: skip the stage
    out = []
    for cfg in selected(ctx, proxy):
        for cp in cfg.spec.config_patches or []:
            if cp.apply_to in kinds and (c := _compile(f"{cfg.namespace}/{cfg.name}", cp)) is not None:
                out.append(c)
    return out


def _context_ok(patch: Compiled, context: Ctx) -> bool:
    want = patch.spec.match.context if patch.spec.match is not None else None
    return want in (None, Ctx.ANY) or want == context


# ---- merging ---------------------------------------------------------------------------------


def merge(dst: Message, src: Message) -> None:
    """Proto merge of ``src`` into ``dst``; ``Any`` fields of the same type are unpacked and merged
    (Istio's MergeAnyWithAny) instead of having their bytes replaced."""
    for field, value in src.ListFields():
        if field.message_type is not None and not field.is_repeated:
            target = getattr(dst, field.name)
            if isinstance(value, any_pb2.Any) and isinstance(target, any_pb2.Any):
                _merge_any(target, value)
            else:
                merge(target, value)
        elif field.is_repeated:
            getattr(dst, field.name).MergeFrom(value)
        else:
            setattr(dst, field.name, value)


def _merge_any(dst: any_pb2.Any, src: any_pb2.Any) -> None:
    if not dst.type_url or dst.type_url != src.type_url:
        dst.CopyFrom(src)
        return
    from google.protobuf import symbol_database

    cls = symbol_database.Default().GetSymbol(src.TypeName())
    a, b = cls(), cls()
    dst.Unpack(a)
    src.Unpack(b)
    merge(a, b)
    dst.Pack(a, deterministic=True)


def _value(patch: Compiled, cls: type[M]) -> M:
    assert isinstance(patch.value, cls), patch
    return patch.value


def _copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


# ---- listeners -------------------------------------------------------------------------------

_LISTENER_KINDS = frozenset({ApplyTo.LISTENER, ApplyTo.NETWORK_FILTER, ApplyTo.HTTP_FILTER})


VIRTUAL = ("virtualInbound", "virtualOutbound")


def _listener_matches(patch: Compiled, lis: listener_pb2.Listener) -> bool:
    lm = patch.spec.match.listener if patch.spec.match is not None else None
    if lm is None:
        return True
    if lm.name and lm.name != lis.name:
        return False
    if patch.apply_to != ApplyTo.LISTENER and lis.name in VIRTUAL:
        return True  # a virtual listener's chains are matched by destination port instead
    return not lm.port_number or lm.port_number == lis.address.socket_address.port_value


def _port_matches(patch: Compiled, lis: listener_pb2.Listener, chain: lc.FilterChain) -> bool:
    lm = patch.spec.match.listener if patch.spec.match is not None else None
    if lm is None or not lm.port_number or lis.name not in VIRTUAL:
        return True
    return bool(lm.port_number == chain.filter_chain_match.destination_port.value)


def _chain_matches(patch: Compiled, chain: lc.FilterChain) -> bool:
    lm = patch.spec.match.listener if patch.spec.match is not None else None
    fm = lm.filter_chain if lm is not None else None
    if fm is None:
        return True
    m = chain.filter_chain_match
    if fm.name and fm.name != chain.name:
        return False
    if fm.sni and fm.sni not in m.server_names:
        return False
    if fm.transport_protocol and fm.transport_protocol != m.transport_protocol:
        return False
    if fm.application_protocols and not set(fm.application_protocols.split(",")) <= set(
        m.application_protocols
    ):
        return False
    if fm.destination_port and fm.destination_port != m.destination_port.value:
        return False
    return not (fm.filter and fm.filter.name) or any(f.name == fm.filter.name for f in chain.filters)


def _names(patch: Compiled) -> tuple[str | None, str | None]:
    """(filter name, subFilter name) the patch matches."""
    lm = patch.spec.match.listener if patch.spec.match is not None else None
    fm = lm.filter_chain.filter if lm is not None and lm.filter_chain is not None else None
    if fm is None:
        return None, None
    return fm.name, fm.sub_filter.name if fm.sub_filter is not None else None


def _edit_list(items: list[M], patch: Compiled, name: str | None, named: Callable[[M], str]) -> list[M]:
    """``items`` after a filter-list operation relative to the item called ``name``."""
    op, value = patch.op, patch.value
    if op == Operation.REMOVE:
        return [i for i in items if named(i) != name] if name else items
    assert value is not None
    if op == Operation.ADD:
        return [*items, _copy(value)]  # type: ignore[list-item]
    if op == Operation.INSERT_FIRST:
        return [_copy(value), *items]  # type: ignore[list-item]
    at = next((n for n, i in enumerate(items) if named(i) == name), None) if name else None
    if op in (Operation.INSERT_BEFORE, Operation.INSERT_AFTER):
        if not name:  # no filter named: BEFORE goes first, AFTER last
            return [_copy(value), *items] if op == Operation.INSERT_BEFORE else [*items, _copy(value)]  # type: ignore[list-item]
        if at is None:
            return items
        at += op == Operation.INSERT_AFTER
        return [*items[:at], _copy(value), *items[at:]]  # type: ignore[list-item]
    if at is None:
        return items
    edited = _copy(items[at])
    if op == Operation.MERGE:
        merge(edited, value)
    else:  # REPLACE
        edited = _copy(value)  # type: ignore[assignment]
    return [*items[:at], edited, *items[at + 1 :]]


def _patch_http(patch: Compiled, flt: lc.Filter) -> None:
    if flt.name != HCM or not flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
        return
    hcm = hcm_pb2.HttpConnectionManager()
    flt.typed_config.Unpack(hcm)
    _, sub = _names(patch)
    filters = _edit_list(list(hcm.http_filters), patch, sub, lambda f: f.name)
    if filters and filters[-1].name != ROUTER and any(f.name == ROUTER for f in filters):
        _error(patch.source, f"HTTP_FILTER {patch.op} would put a filter after {ROUTER}")
        return
    del hcm.http_filters[:]
    hcm.http_filters.extend(filters)
    flt.typed_config.Pack(hcm, deterministic=True)


def _patch_chain(patch: Compiled, chain: lc.FilterChain) -> None:
    name, _ = _names(patch)
    if patch.apply_to == ApplyTo.HTTP_FILTER:
        for flt in chain.filters:
            if not name or flt.name == name:
                _patch_http(patch, flt)
        return
    filters = _edit_list(list(chain.filters), patch, name, lambda f: f.name)
    del chain.filters[:]
    chain.filters.extend(filters)


def _listener_context(proxy: Proxy, inbound: bool) -> Ctx:
    if proxy.type is ProxyType.ROUTER:
        return Ctx.GATEWAY
    return Ctx.SIDECAR_INBOUND if inbound else Ctx.SIDECAR_OUTBOUND


def _prepare(
    ctx: PushContext, proxy: Proxy, items: Sequence[M], kinds: frozenset[ApplyTo], inbound: bool
) -> tuple[list[Compiled], list[M]]:
    """The patches of ``kinds`` for this part's context, and copies of ``items`` to patch (the
    generated messages themselves when nothing applies)."""
    context = _listener_context(proxy, inbound)
    patches = [p for p in compiled(ctx, proxy, kinds) if _context_ok(p, context)]
    return patches, [_copy(x) for x in items] if patches else list(items)


def patch_listeners(
    ctx: PushContext, proxy: Proxy, listeners: Sequence[listener_pb2.Listener], inbound: bool
) -> list[listener_pb2.Listener]:
    """``listeners`` (one part: inbound or outbound) after the proxy's EnvoyFilter patches."""
    patches, out = _prepare(ctx, proxy, listeners, _LISTENER_KINDS, inbound)
    return _run(patches, out, inbound, _listener_patch)


def _run(
    patches: list[Compiled], out: list[M], inbound: bool, apply: Callable[[Compiled, list[M], bool], list[M]]
) -> list[M]:
    """Each patch applied in turn; one that raises is logged, counted and undone (Istio recovers
    such panics but keeps partial edits; meshplane keeps the objects as they were before it)."""
    for patch in patches:
        before = [_copy(x) for x in out]
        try:
            out = apply(patch, out, inbound)
        except Exception:  # a patch must never fail the push of the proxy
            log.exception("envoyfilter %s: %s patch failed", patch.source, patch.apply_to)
            _error(patch.source, f"{patch.apply_to} {patch.op} raised")
            out = before
    return out


def _listener_patch(
    patch: Compiled, out: list[listener_pb2.Listener], inbound: bool
) -> list[listener_pb2.Listener]:
    if patch.apply_to == ApplyTo.LISTENER:
        return _listener_op(patch, out, inbound)
    for lis in out:
        if not _listener_matches(patch, lis):
            continue
        chains = [
            *lis.filter_chains,
            *([lis.default_filter_chain] if lis.HasField("default_filter_chain") else []),
        ]
        for chain in chains:
            if _port_matches(patch, lis, chain) and _chain_matches(patch, chain):
                _patch_chain(patch, chain)
    return out


def _listener_op(
    patch: Compiled, out: list[listener_pb2.Listener], inbound: bool
) -> list[listener_pb2.Listener]:
    return _object_op(patch, out, inbound, listener_pb2.Listener, _listener_matches)


def _object_op(
    patch: Compiled, out: list[M], inbound: bool, cls: type[M], matches: Callable[[Compiled, M], bool]
) -> list[M]:
    """ADD/REMOVE/MERGE of whole listeners or clusters."""
    if patch.op == Operation.ADD:
        # ADD runs once per proxy: in the outbound (and gateway) pass, never the inbound one.
        return out if inbound else [*out, _copy(_value(patch, cls))]
    if patch.op == Operation.REMOVE:
        return [x for x in out if not matches(patch, x)]
    for item in out:
        if matches(patch, item) and patch.value is not None:
            merge(item, patch.value)
    return out


# ---- clusters --------------------------------------------------------------------------------


def _cluster_matches(patch: Compiled, cluster: cluster_pb2.Cluster) -> bool:
    cm = patch.spec.match.cluster if patch.spec.match is not None else None
    if cm is None:
        return True
    if cm.name:
        return bool(cm.name == cluster.name)
    parts = cluster.name.split("|")
    if len(parts) != 4:
        return not (cm.subset or cm.port_number or cm.service)
    _, port, subset, host = parts
    if cm.subset and cm.subset != subset:
        return False
    if cm.port_number and str(cm.port_number) != port:
        return False
    return not cm.service or cm.service == host


def patch_clusters(
    ctx: PushContext, proxy: Proxy, clusters: Sequence[cluster_pb2.Cluster], inbound: bool
) -> list[cluster_pb2.Cluster]:
    """``clusters`` (inbound or the shared outbound part) after the proxy's CLUSTER patches."""
    patches, out = _prepare(ctx, proxy, clusters, frozenset({ApplyTo.CLUSTER}), inbound)
    return _run(patches, out, inbound, _cluster_patch)


def _cluster_patch(
    patch: Compiled, out: list[cluster_pb2.Cluster], inbound: bool
) -> list[cluster_pb2.Cluster]:
    return _object_op(patch, out, inbound, cluster_pb2.Cluster, _cluster_matches)
