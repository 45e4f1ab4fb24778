"""The operations themselves: proto MERGE (Istio's, with ``Any`` fields merged unpacked), edits of
named lists (filters, routes) and of whole objects (listeners, clusters, virtual hosts), and the
loop that runs a part's patches, checking each result as Envoy would."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf import any_pb2, symbol_database
from google.protobuf.message import Message

from meshplane.pilot.generators.envoyfilter.select import Compiled, error, log
from meshplane.pilot.generators.envoyfilter.status import STATUS
from meshplane.shared.config.models.envoy_filter import Operation

M = TypeVar("M", bound=Message)


class PatchError(ValueError):
    """A patch that cannot apply to an object (skipped, logged and counted, no traceback)."""


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
    if not dst.type_url:
        dst.CopyFrom(src)
        return
    if dst.type_url != src.type_url:  # Istio's MergeAnyWithAny fails and keeps the original
        raise PatchError(f"cannot merge a {src.TypeName()} into a {dst.TypeName()}")
    cls = symbol_database.Default().GetSymbol(src.TypeName())
    a, b = cls(), cls()
    dst.Unpack(a)
    src.Unpack(b)
    merge(a, b)
    dst.Pack(a, deterministic=True)


def copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def value(patch: Compiled, cls: type[M]) -> M:
    """A fresh copy of the patch's value (values are shared by every object patched)."""
    assert isinstance(patch.value, cls), patch
    return copy(patch.value)


def edit_list(items: list[M], patch: Compiled, target: Callable[[M], bool] | None) -> list[M]:
    """``items`` after a list operation relative to the first item ``target`` selects (None: the
    patch names no item: REMOVE/MERGE/REPLACE do nothing, INSERT_BEFORE goes first and
    INSERT_AFTER last, as Istio)."""
    op, new = patch.op, patch.value
    if op == Operation.REMOVE:
        return [i for i in items if not target(i)] if target else items
    assert new is not None
    fresh: M = copy(new)  # type: ignore[assignment]
    if op == Operation.ADD:
        return [*items, fresh]
    if op == Operation.INSERT_FIRST:
        return [fresh, *items]
    if target is None:
        if op == Operation.INSERT_BEFORE:
            return [fresh, *items]
        return [*items, fresh] if op == Operation.INSERT_AFTER else items
    at = next((n for n, i in enumerate(items) if target(i)), None)
    if at is None:
        return items
    if op in (Operation.INSERT_BEFORE, Operation.INSERT_AFTER):
        at += op == Operation.INSERT_AFTER
        return [*items[:at], fresh, *items[at:]]
    if op == Operation.MERGE:
        edited = copy(items[at])
        merge(edited, fresh)
        return [*items[:at], edited, *items[at + 1 :]]
    return [*items[:at], fresh, *items[at + 1 :]]  # REPLACE


def replace_list(field: object, items: list[M]) -> None:
    """Set a repeated message field to ``items``."""
    del field[:]  # type: ignore[attr-defined]
    field.extend(items)  # type: ignore[attr-defined]


def object_op(
    patch: Compiled, out: list[M], add_here: bool, cls: type[M], matches: Callable[[M], bool]
) -> list[M]:
    """ADD/REMOVE/MERGE/REPLACE of whole objects (listeners, clusters, virtual hosts)."""
    if patch.op == Operation.ADD:
        return [*out, value(patch, cls)] if add_here else out
    if patch.op == Operation.REMOVE:
        return [x for x in out if not matches(x)]
    result = []
    for item in out:
        if matches(item):
            if patch.op == Operation.REPLACE:
                item = value(patch, cls)
            else:
                merge(item, value(patch, cls))
        result.append(item)
    return result


def run(
    version: str,
    patches: list[Compiled],
    out: list[M],
    apply: Callable[[Compiled, list[M]], list[M]],
    problems: Callable[[list[M], list[M]], list[str]],
) -> list[M]:
    """Each patch applied in turn to this part's objects. A patch that raises, or whose result
    Envoy would reject (``problems(changed objects, all objects)`` finds something the objects
    did not have before), is undone for this part, logged and counted; Istio recovers a
    panicking patch but keeps its partial edits and sends what Envoy then rejects."""
    for patch in patches:
        before = [copy(x) for x in out]
        try:
            out = apply(patch, out)
        except PatchError as exc:
            error(patch.source, patch.apply_to, f"{patch.apply_to} {patch.op}: {exc}")
            out = before
            continue
        except Exception:  # a patch must never fail the push of the proxy
            log.exception("envoyfilter %s: %s patch failed", patch.source, patch.apply_to)
            error(patch.source, patch.apply_to, f"{patch.apply_to} {patch.op} raised")
            out = before
            continue
        if out == before:
            STATUS.evaluated(version, patch.source, patch.apply_to, applied=False)
            continue
        old = {_name(x): x for x in before}
        changed = [x for x in out if old.get(_name(x)) != x]
        found = problems(changed, out)
        if found:  # only what the patch brought in counts
            known = set(problems([old[_name(x)] for x in changed if _name(x) in old], before))
            found = [p for p in found if p not in known]
        if found:
            what = "; ".join(found[:3])
            error(
                patch.source,
                patch.apply_to,
                f"{patch.apply_to} {patch.op}: Envoy would reject the result: {what}",
            )
            out = before
            continue
        STATUS.evaluated(version, patch.source, patch.apply_to, applied=True)
    return out


def _name(msg: Message) -> str:
    return str(getattr(msg, "name", ""))
