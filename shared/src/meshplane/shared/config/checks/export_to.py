"""Istio's ``exportTo`` rule (HEAD): no duplicates, ``*`` alone, ``~`` only on ServiceEntry and alone."""

from __future__ import annotations

from meshplane.shared.config.checks.hosts import is_istio_label


def export_to_problems(export_to: list[str], namespace: str, *, allow_none: bool) -> list[tuple[int, str]]:
    """(index, message) for every bad ``exportTo`` entry; ``.`` counts as ``namespace``."""
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        if entry in ("*", "."):
            canonical = namespace if entry == "." else entry
        elif entry == "~":
            if not allow_none:
                problems.append((i, "exportTo '~' is only allowed on ServiceEntry"))
                continue
            canonical = entry
        elif is_istio_label(entry):
            canonical = entry
        else:
            problems.append((i, f"invalid namespace {entry!r} in exportTo"))
            continue
        if canonical in seen:
            problems.append((i, f"duplicate entry {entry!r} in exportTo"))
        seen.add(canonical)
    if len(export_to) > 1:
        if "*" in export_to:
            problems.append((export_to.index("*"), "cannot have both '*' and other namespaces in exportTo"))
        if "~" in export_to and allow_none:
            problems.append(
                (export_to.index("~"), "if '~' is present in exportTo, it must be the only entry")
            )
    return problems
