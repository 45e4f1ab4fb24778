"""``--set path=value`` flags and the merge of IstioOperator specs, as istioctl does them.

A path is relative to ``spec`` (``components.pilot.k8s.replicaCount=3``,
``values.global.hub=registry.example/meshplane``, ``meshConfig.accessLogFile=/dev/stdout``,
``revision=canary``); a leading ``spec.`` is accepted too. List items are chosen by index
(``components.ingressGateways[0].enabled=false``) or by name
(``components.ingressGateways[name:istio-ingressgateway].enabled=false``). ``\\.`` escapes a dot
inside a key. Values are YAML scalars (``true``, ``3``, ``"3"``). A path that names no field of
the install resource is refused before anything is merged, with the path in the message.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from typing import Any, Union

import yaml
from pydantic import BaseModel

from meshplane.ctl.install.spec import InstallError, Spec

#: Lists merged item by item, matched on ``name`` (a profile's gateway and the user's are one).
_NAMED_LISTS = frozenset({"ingressGateways", "egressGateways"})
_TOKEN = re.compile(r"^(?P<key>[^\[\]]+)(?:\[(?P<sel>[^\]]+)\])?$")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged onto a copy of ``base``: maps by key, gateway lists by name, other lists replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        mine = out.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            out[key] = merge(mine, value)
        elif key in _NAMED_LISTS and isinstance(mine, list) and isinstance(value, list):
            out[key] = _merge_named(mine, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    out = copy.deepcopy(base)
    for item in over:
        name = item.get("name") if isinstance(item, dict) else None
        at = next((i for i, b in enumerate(out) if isinstance(b, dict) and b.get("name") == name), None)
        if name is None or at is None:
            out.append(copy.deepcopy(item))
        else:
            out[at] = merge(out[at], item)
    return out


def apply_set(spec: dict[str, Any], flag: str) -> dict[str, Any]:
    """``spec`` with one ``path=value`` flag applied (a new dict); InstallError names a bad path."""
    path, sep, raw = flag.partition("=")
    if not sep or not path:
        raise InstallError(f"--set {flag!r}: expected path=value")
    tokens = _split(path.removeprefix("spec."), flag)
    leaf = _check_path(tokens, flag)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    if leaf is str and isinstance(value, bool | int | float):
        value = raw  # a string field keeps the text as given (env values, tags such as 1.0)
    out = copy.deepcopy(spec)
    node: Any = out
    for i, (key, sel) in enumerate(tokens):
        last = i == len(tokens) - 1
        if sel is None:
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
            continue
        items = node.setdefault(key, [])
        item = _select(items, sel, flag)
        if last:
            items[items.index(item)] = value
        else:
            node = item
    return out


def _split(path: str, flag: str) -> list[tuple[str, str | None]]:
    parts = [p.replace("\0", ".") for p in path.replace("\\.", "\0").split(".")]
    tokens = []
    for part in parts:
        m = _TOKEN.match(part)
        if m is None:
            raise InstallError(f"--set {flag!r}: cannot read path element {part!r}")
        tokens.append((m["key"], m["sel"]))
    return tokens


def _select(items: list[Any], sel: str, flag: str) -> Any:
    if sel.isdigit():
        index = int(sel)
        if index == len(items):
            items.append({})
        if index >= len(items):
            raise InstallError(f"--set {flag!r}: index {index} is past the end of a list of {len(items)}")
        return items[index]
    field, _, wanted = sel.partition(":")
    if field != "name" or not wanted:
        raise InstallError(f"--set {flag!r}: select list items by [N] or [name:NAME], not [{sel}]")
    found = next((it for it in items if isinstance(it, dict) and it.get("name") == wanted), None)
    if found is None:
        found = {"name": wanted}
        items.append(found)
    return found


def _check_path(tokens: list[tuple[str, str | None]], flag: str) -> Any:
    """Walk the install resource's schema along ``tokens``; refuse a path that names no field.

    Returns the type of the field the path ends at (None below a free-form map)."""
    model: type[BaseModel] | None = Spec
    free = False  # below a free-form map (meshConfig, nodeSelector, ...): any key goes
    walked: list[str] = []
    inner: Any = None
    for key, sel in tokens:
        if model is None and not free:
            raise InstallError(f"--set {flag!r}: {'.'.join(walked)} is a value, it has no field {key!r}")
        walked.append(key)
        if free:
            continue
        assert model is not None
        field = next((f for name, f in model.model_fields.items() if key in (f.alias, name)), None)
        if field is None:
            known = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items()))
            raise InstallError(f"--set {flag!r}: unknown path {'.'.join(walked)} (known here: {known})")
        inner = _unwrap(field.annotation)
        if sel is not None:
            if typing.get_origin(inner) is not list:
                raise InstallError(f"--set {flag!r}: {'.'.join(walked)} is not a list")
            inner = typing.get_args(inner)[0]
        free = typing.get_origin(inner) in (dict, list)
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return None if free else inner


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
