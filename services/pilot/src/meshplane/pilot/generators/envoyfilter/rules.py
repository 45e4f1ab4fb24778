"""Would Envoy reject this resource? The checks Envoy runs on every xDS resource before it applies
one, so a patched resource that fails them is never sent.

Envoy validates each resource against the protoc-gen-validate rules written in its API
(``[(validate.rules)...]`` field options: required messages and oneofs, string lengths, number
bounds, defined enum values, item counts, header-safe strings) and then runs its own checks on
lists: names unique, filter chains distinct, the terminal network and HTTP filter last, virtual
host domains unique. Both kinds are checked here, on the messages as they would be sent
(``typed_config`` Anys are unpacked and checked too).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, descriptor, symbol_database
from google.protobuf.message import Message
from validate import validate_pb2 as pgv

HCM = "envoy.filters.network.http_connection_manager"
#: Network filters that end a chain (Envoy: "terminal filter ... must be the last filter").
TERMINAL_NETWORK = frozenset(
    {HCM, "envoy.filters.network.tcp_proxy", "envoy.filters.network.direct_response"}
)
ROUTER = "envoy.filters.http.router"
_HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
_LOOSE_HEADER = re.compile(r"^[^\x00\n\r]*$")  # strict: false
_MAX_PROBLEMS = 5


@functools.cache
def _field_rules(desc: descriptor.Descriptor) -> tuple[tuple[descriptor.FieldDescriptor, Any], ...]:
    """The fields of ``desc`` that carry validate rules, with their rules."""
    out = []
    for f in desc.fields:
        opts = f.GetOptions()
        if opts.HasExtension(pgv.rules):
            out.append((f, opts.Extensions[pgv.rules]))
    return tuple(out)


@functools.cache
def _required_oneofs(desc: descriptor.Descriptor) -> tuple[str, ...]:
    return tuple(o.name for o in desc.oneofs if o.GetOptions().Extensions[pgv.required])


@functools.cache
def _disabled(desc: descriptor.Descriptor) -> bool:
    opts = desc.GetOptions()
    return bool(opts.Extensions[pgv.disabled] or opts.Extensions[pgv.ignored])


def proto_problems(msg: Message, path: str = "") -> list[str]:
    """What Envoy's generated validation would say about ``msg`` (at most a few problems)."""
    out: list[str] = []
    for problem in _walk(msg, path or msg.DESCRIPTOR.name):
        out.append(problem)
        if len(out) >= _MAX_PROBLEMS:
            break
    return out


def _walk(msg: Message, path: str) -> Iterator[str]:
    desc = msg.DESCRIPTOR
    if isinstance(msg, any_pb2.Any):
        inner = _unpack(msg)
        if inner is not None:
            yield from _walk(inner, f"{path}<{inner.DESCRIPTOR.name}>")
        return
    if _disabled(desc):
        return
    for required in _required_oneofs(desc):
        if msg.WhichOneof(required) is None:
            yield f"{path}: one of {required} is required"
    for f, rules in _field_rules(desc):
        oneof = f.containing_oneof
        if oneof is not None and msg.WhichOneof(oneof.name) != f.name:
            continue  # rules of a oneof member apply when it is the one set
        yield from _check_field(msg, f, rules, f"{path}.{f.name}")
    for f, value in msg.ListFields():
        if f.message_type is None:
            continue
        where = f"{path}.{f.name}"
        if f.message_type.GetOptions().map_entry:
            if f.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    yield from _walk(item, f"{where}[{key}]")
        elif f.is_repeated:
            for i, item in enumerate(value):
                yield from _walk(item, f"{where}[{i}]")
        else:
            yield from _walk(value, where)


def _unpack(packed: any_pb2.Any) -> Message | None:
    try:
        cls = symbol_database.Default().GetSymbol(packed.TypeName())
    except KeyError:
        return None
    inner: Message = cls()
    return inner if packed.Unpack(inner) else None


def _check_field(msg: Message, f: descriptor.FieldDescriptor, rules: Any, path: str) -> Iterator[str]:
    value = getattr(msg, f.name)
    if (
        rules.HasField("message")
        and rules.message.required
        and not f.is_repeated
        and not msg.HasField(f.name)
    ):
        yield f"{path}: value is required"
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    typed = getattr(rules, kind)
    if kind == "repeated":
        yield from _check_repeated(list(value), typed, path)
    elif kind == "map":
        if typed.min_pairs and len(value) < typed.min_pairs:
            yield f"{path}: value must contain at least {typed.min_pairs} pair(s)"
    elif kind in ("duration", "any"):
        yield from _check_wrapped(msg, f, kind, typed, path)
    elif f.message_type is not None and f.message_type.full_name.startswith("google.protobuf."):
        if msg.HasField(f.name):  # wrapper types (UInt32Value, ...): rules apply to .value
            yield from _check_scalar(kind, typed, value.value, f, path)
    else:
        yield from _check_scalar(kind, typed, value, f, path)


def _check_repeated(items: list[Any], rules: Any, path: str) -> Iterator[str]:
    if rules.ignore_empty and not items:
        return
    if rules.min_items and len(items) < rules.min_items:
        yield f"{path}: value must contain at least {rules.min_items} item(s)"
    if rules.HasField("max_items") and len(items) > rules.max_items:
        yield f"{path}: value must contain no more than {rules.max_items} item(s)"
    if rules.unique and len(set(map(_hashable, items))) != len(items):
        yield f"{path}: repeated value must contain unique items"
    if rules.HasField("items"):
        kind = rules.items.WhichOneof("type")
        if kind in _SCALAR_CHECKS:
            for i, item in enumerate(items):
                yield from _check_scalar(kind, getattr(rules.items, kind), item, None, f"{path}[{i}]")


def _hashable(item: Any) -> Any:
    return item.SerializeToString(deterministic=True) if isinstance(item, Message) else item


def _check_wrapped(
    msg: Message, f: descriptor.FieldDescriptor, kind: str, rules: Any, path: str
) -> Iterator[str]:
    present = msg.HasField(f.name)
    if rules.required and not present:
        yield f"{path}: value is required"
    if not present or kind == "any":
        return
    d = getattr(msg, f.name)
    nanos = d.seconds * 10**9 + d.nanos

    def bound(name: str) -> int | None:
        if not rules.HasField(name):
            return None
        b = getattr(rules, name)
        return int(b.seconds * 10**9 + b.nanos)

    yield from _bounds(nanos, bound("gt"), bound("gte"), bound("lt"), bound("lte"), path)


def _bounds(
    v: float, gt: float | None, gte: float | None, lt: float | None, lte: float | None, path: str
) -> Iterator[str]:
    if gt is not None and not v > gt:
        yield f"{path}: value must be greater than {gt}"
    if gte is not None and not v >= gte:
        yield f"{path}: value must be greater than or equal to {gte}"
    if lt is not None and not v < lt:
        yield f"{path}: value must be less than {lt}"
    if lte is not None and not v <= lte:
        yield f"{path}: value must be less than or equal to {lte}"


def _check_number(rules: Any, v: Any, path: str) -> Iterator[str]:
    if getattr(rules, "ignore_empty", False) and not v:
        return
    if rules.HasField("const") and v != rules.const:
        yield f"{path}: value must equal {rules.const}"
    if rules.not_in and v in rules.not_in:
        yield f"{path}: value must not be in {list(rules.not_in)}"
    if getattr(rules, "in") and v not in getattr(rules, "in"):
        yield f"{path}: value must be in {list(getattr(rules, 'in'))}"

    def opt(name: str) -> Any:
        return getattr(rules, name) if rules.HasField(name) else None

    yield from _bounds(v, opt("gt"), opt("gte"), opt("lt"), opt("lte"), path)


def _check_string(rules: Any, v: str, path: str) -> Iterator[str]:
    if rules.ignore_empty and not v:
        return
    if rules.min_len and len(v) < rules.min_len:
        yield f"{path}: value length must be at least {rules.min_len} runes"
    if rules.HasField("max_len") and len(v) > rules.max_len:
        yield f"{path}: value length must be at most {rules.max_len} runes"
    if rules.min_bytes and len(v.encode()) < rules.min_bytes:
        yield f"{path}: value length must be at least {rules.min_bytes} bytes"
    if rules.HasField("max_bytes") and len(v.encode()) > rules.max_bytes:
        yield f"{path}: value length must be at most {rules.max_bytes} bytes"
    if rules.prefix and not v.startswith(rules.prefix):
        yield f"{path}: value does not have prefix {rules.prefix!r}"
    if getattr(rules, "in") and v not in getattr(rules, "in"):
        yield f"{path}: value must be in {list(getattr(rules, 'in'))}"
    if rules.HasField("well_known_regex"):
        which = pgv.KnownRegex.Name(rules.well_known_regex)
        strict = not rules.HasField("strict") or rules.strict
        pattern = {"HTTP_HEADER_NAME": _HEADER_NAME, "HTTP_HEADER_VALUE": _HEADER_VALUE}.get(which)
        if pattern is not None and not strict:
            pattern = _LOOSE_HEADER
        if pattern is not None and v and not pattern.match(v):
            yield f"{path}: value does not match regex pattern {pattern.pattern!r}"


def _check_enum(rules: Any, v: int, f: descriptor.FieldDescriptor | None, path: str) -> Iterator[str]:
    if (
        rules.defined_only
        and f is not None
        and f.enum_type is not None
        and v not in f.enum_type.values_by_number
    ):
        yield f"{path}: value must be one of the defined enum values"


_SCALAR_CHECKS: dict[str, Callable[..., Iterator[str]]] = {
    **{
        k: lambda r, v, f, p: _check_number(r, v, p)
        for k in (
            "float",
            "double",
            "int32",
            "int64",
            "uint32",
            "uint64",
            "sint32",
            "sint64",
            "fixed32",
            "fixed64",
            "sfixed32",
            "sfixed64",
        )
    },
    "string": lambda r, v, f, p: _check_string(r, v, p),
    "enum": _check_enum,
}


def _check_scalar(
    kind: str, rules: Any, v: Any, f: descriptor.FieldDescriptor | None, path: str
) -> Iterator[str]:
    check = _SCALAR_CHECKS.get(kind)
    if check is not None:
        yield from check(rules, v, f, path)


# ---- Envoy's own checks on lists ---------------------------------------------------------------


def duplicates(names: Iterable[str], what: str) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            out.append(f"duplicate {what} {name!r}")
        seen.add(name)
    return out


def _hcm(flt: lc.Filter) -> hcm_pb2.HttpConnectionManager | None:
    if flt.name != HCM or not flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
        return None
    mgr = hcm_pb2.HttpConnectionManager()
    flt.typed_config.Unpack(mgr)
    return mgr


def chain_problems(chain: lc.FilterChain, where: str) -> list[str]:
    out = []
    names = [f.name for f in chain.filters]
    for name in names[:-1]:
        if name in TERMINAL_NETWORK:
            out.append(f"{where}: terminal filter {name} must be the last filter in a network filter chain")
    for flt in chain.filters:
        mgr = _hcm(flt)
        if mgr is None:
            continue
        http = [h.name for h in mgr.http_filters]
        if http and http[-1] != ROUTER and ROUTER in http:
            out.append(f"{where}: {ROUTER} must be the last HTTP filter (it is the terminal filter)")
        if mgr.HasField("route_config"):
            out += route_problems(mgr.route_config)
    return out


def listener_problems(lis: listener_pb2.Listener) -> list[str]:
    out = proto_problems(lis, f"Listener {lis.name}")
    chains = [
        *lis.filter_chains,
        *([lis.default_filter_chain] if lis.HasField("default_filter_chain") else []),
    ]
    for chain in chains:
        out += chain_problems(chain, f"Listener {lis.name} filter chain {chain.name!r}")
    matches = [c.filter_chain_match.SerializeToString(deterministic=True) for c in lis.filter_chains]
    if len(set(matches)) != len(matches):
        out.append(f"Listener {lis.name}: multiple filter chains with the same matching rules")
    out += duplicates((c.name for c in lis.filter_chains if c.name), f"filter chain name in {lis.name}")
    return out


def listeners_problems(listeners: Iterable[listener_pb2.Listener]) -> list[str]:
    items = list(listeners)
    bound = [
        f"{x.address.socket_address.address}:{x.address.socket_address.port_value}"
        for x in items
        if x.address.HasField("socket_address") and (not x.HasField("bind_to_port") or x.bind_to_port.value)
    ]
    return duplicates((x.name for x in items), "listener name") + duplicates(bound, "listener address")


def route_problems(rc: route_pb2.RouteConfiguration) -> list[str]:
    out = proto_problems(rc, f"RouteConfiguration {rc.name}")
    out += duplicates((vh.name for vh in rc.virtual_hosts), f"virtual host name in {rc.name}")
    domains = [d.lower() for vh in rc.virtual_hosts for d in vh.domains]
    out += duplicates(domains, f"virtual host domain in {rc.name}")
    return out
