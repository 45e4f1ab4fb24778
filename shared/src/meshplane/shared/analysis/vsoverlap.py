"""Overlapping HTTP matches (IST0131), as Istio's validation finds them: a later match whose URI
prefix extends an earlier match's prefix, on the same port, with a method, authority, headers,
query parameters and absent headers the earlier one also covers (equal, or the earlier value starting
with the later one, as Istio compares them). A match without a method counts as ``GET``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    rule: str
    match: str
    prefix: str
    port: object
    method: str
    authority: str
    headers: dict[str, str]
    params: dict[str, str]
    without: dict[str, str]


def _value(sm: object) -> str:
    """``exact:V`` / ``prefix:V`` of a StringMatch ("" for regex or nothing)."""
    d = sm if isinstance(sm, Mapping) else {}
    if d.get("exact"):
        return f"exact:{d['exact']}"
    if d.get("prefix"):
        return f"prefix:{d['prefix']}"
    return ""


def _values(field: object) -> dict[str, str]:
    return {k: _value(v) for k, v in field.items()} if isinstance(field, Mapping) else {}


def entry(rule_label: str, match_label: str, match: Mapping[str, Any]) -> Entry | None:
    """The comparable form of a match with a URI prefix (None for any other match)."""
    uri = match.get("uri")
    prefix = str(uri.get("prefix") or "") if isinstance(uri, Mapping) else ""
    if not prefix:
        return None
    return Entry(
        rule_label,
        match_label,
        prefix,
        match.get("port") or 0,
        _value(match.get("method")) or "exact:GET",
        _value(match.get("authority")),
        _values(match.get("headers")),
        _values(match.get("queryParams")),
        _values(match.get("withoutHeaders")),
    )


def _covers_map(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) == len(b) and all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covered(a: Entry, b: Entry) -> bool:
    """Istio's coveredValidation(a, b): whether the later match ``b`` is shadowed by ``a``."""
    return (
        b.prefix.startswith(a.prefix)
        and b.port == a.port
        and (a.method == b.method or a.method.startswith(b.method))
        and (a.authority == b.authority or a.authority.startswith(b.authority))
        and _covers_map(a.headers, b.headers)
        and _covers_map(a.params, b.params)
        and _covers_map(a.without, b.without)
    )


def overlaps(entries: list[Entry]) -> list[str]:
    """The IST0131 texts for later matches an earlier one covers (equal prefixes are left to the
    duplicate check)."""
    out = []
    for i, a in enumerate(entries):
        for b in entries[i + 1 :]:
            if b.prefix != a.prefix and _covered(a, b):
                out.append(
                    f"VirtualService rule {b.rule} match {b.match} of prefix {b.prefix} is not used "
                    f"(duplicate/overlapping match in rule {a.match} of prefix {a.prefix} on {a.rule})."
                )
    return out
