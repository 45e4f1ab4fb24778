"""Listener-class patches: ``LISTENER``, ``LISTENER_FILTER``, ``FILTER_CHAIN``, ``NETWORK_FILTER``
and ``HTTP_FILTER``, matched as Istio's ``listener_patch.go`` matches them."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshplane.pilot.generators.envoyfilter import ops
from meshplane.pilot.generators.envoyfilter.rules import HCM, listener_problems, listeners_problems
from meshplane.pilot.generators.envoyfilter.select import Compiled
from meshplane.shared.config.models.envoy_filter import ApplyTo, ListenerMatch, Operation

KINDS = frozenset(
    {
        ApplyTo.LISTENER,
        ApplyTo.LISTENER_FILTER,
        ApplyTo.FILTER_CHAIN,
        ApplyTo.NETWORK_FILTER,
        ApplyTo.HTTP_FILTER,
    }
)
VIRTUAL = ("virtualInbound", "virtualOutbound")


def _lm(patch: Compiled) -> ListenerMatch | None:
    return patch.spec.match.listener if patch.spec.match is not None else None


def listener_matches(patch: Compiled, lis: listener_pb2.Listener) -> bool:
    lm = _lm(patch)
    if lm is None:
        return True
    if lm.name and lm.name != lis.name:
        return False
    if patch.apply_to not in (ApplyTo.LISTENER, ApplyTo.LISTENER_FILTER) and lis.name in VIRTUAL:
        return True  # a virtual listener's chains are matched by destination port instead
    return not lm.port_number or lm.port_number == lis.address.socket_address.port_value


def _port_matches(patch: Compiled, lis: listener_pb2.Listener, chain: lc.FilterChain) -> bool:
    lm = _lm(patch)
    if lm is None or not lm.port_number or lis.name not in VIRTUAL:
        return True
    return bool(lm.port_number == chain.filter_chain_match.destination_port.value)


def _chain_matches(patch: Compiled, chain: lc.FilterChain) -> bool:
    lm = _lm(patch)
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
    lm = _lm(patch)
    fm = lm.filter_chain.filter if lm is not None and lm.filter_chain is not None else None
    if fm is None:
        return None, None
    return fm.name, fm.sub_filter.name if fm.sub_filter is not None else None


def _named(name: str | None) -> Callable[[lc.Filter | hcm_pb2.HttpFilter | lc.ListenerFilter], bool] | None:
    return (lambda f: f.name == name) if name else None


def _patch_http(patch: Compiled, flt: lc.Filter) -> None:
    if flt.name != HCM or not flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
        return
    hcm = hcm_pb2.HttpConnectionManager()
    flt.typed_config.Unpack(hcm)
    _, sub = _names(patch)
    ops.replace_list(hcm.http_filters, ops.edit_list(list(hcm.http_filters), patch, _named(sub)))
    flt.typed_config.Pack(hcm, deterministic=True)


def _patch_chain(patch: Compiled, chain: lc.FilterChain) -> None:
    name, _ = _names(patch)
    if patch.apply_to == ApplyTo.HTTP_FILTER:
        for flt in chain.filters:
            if not name or flt.name == name:
                _patch_http(patch, flt)
        return
    ops.replace_list(chain.filters, ops.edit_list(list(chain.filters), patch, _named(name)))


def _merge_chain(patch: Compiled, chain: lc.FilterChain) -> None:
    """FILTER_CHAIN MERGE: a value's transport socket merges into a socket of the same name only;
    otherwise the whole value is merged (Istio's special case)."""
    new = ops.value(patch, lc.FilterChain)
    if new.HasField("transport_socket") and chain.transport_socket.name == new.transport_socket.name:
        ops.merge(chain.transport_socket, new.transport_socket)
        return
    ops.merge(chain, new)


def _filter_chains(patch: Compiled, lis: listener_pb2.Listener) -> None:
    if patch.op == Operation.ADD:
        lis.filter_chains.append(ops.value(patch, lc.FilterChain))
        return
    hits = [c for c in lis.filter_chains if _port_matches(patch, lis, c) and _chain_matches(patch, c)]
    if patch.op == Operation.REMOVE:
        ops.replace_list(lis.filter_chains, [c for c in lis.filter_chains if c not in hits])
        if lis.HasField("default_filter_chain") and _chain_matches(patch, lis.default_filter_chain):
            lis.ClearField("default_filter_chain")
        return
    for chain in hits:
        _merge_chain(patch, chain)


def _listener_filters(patch: Compiled, lis: listener_pb2.Listener) -> None:
    lm = _lm(patch)
    name = lm.listener_filter if lm is not None else None
    ops.replace_list(lis.listener_filters, ops.edit_list(list(lis.listener_filters), patch, _named(name)))


def apply(patch: Compiled, out: list[listener_pb2.Listener], add_here: bool) -> list[listener_pb2.Listener]:
    """``out`` after one listener-class patch."""
    if patch.apply_to == ApplyTo.LISTENER:
        return ops.object_op(
            patch, out, add_here, listener_pb2.Listener, lambda x: listener_matches(patch, x)
        )
    for lis in out:
        if not listener_matches(patch, lis):
            continue
        if patch.apply_to == ApplyTo.LISTENER_FILTER:
            _listener_filters(patch, lis)
        elif patch.apply_to == ApplyTo.FILTER_CHAIN:
            _filter_chains(patch, lis)
        else:
            chains = [
                *lis.filter_chains,
                *([lis.default_filter_chain] if lis.HasField("default_filter_chain") else []),
            ]
            for chain in chains:
                if _port_matches(patch, lis, chain) and _chain_matches(patch, chain):
                    _patch_chain(patch, chain)
    return out


def problems(changed: list[listener_pb2.Listener], everything: list[listener_pb2.Listener]) -> list[str]:
    out = [p for lis in changed for p in listener_problems(lis)]
    return out + listeners_problems(everything)
