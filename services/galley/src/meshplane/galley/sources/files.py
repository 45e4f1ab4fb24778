"""Load one config file into objects: parse, validate, keep the last good version of what breaks.

A file is read as YAML/JSON documents with ``meshplane.shared.config.load_text``; Istio objects
are checked with ``validate_object`` (the webhook's rules). The outcome for the file:

* unreadable, or a document that does not parse: the file is in error and *all* the objects it
  held before stay in effect (nothing is known about what it now holds);
* otherwise every valid document takes effect; an invalid one is reported and the previous
  valid version of that same object (if any) stays in effect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry import trace

from meshplane.galley.sources.model import ConfigObject, ObjectRef, identity
from meshplane.shared.config import ISTIO_GROUPS, load_text, validate_object

_tracer = trace.get_tracer("meshplane.galley")


@dataclass(slots=True)
class FileState:
    """What galley currently takes from one file, and what was wrong with its latest version."""

    path: str
    #: Objects in effect from this file, by key.
    objects: dict[str, ConfigObject] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: :func:`file_stamp` of the version last read.
    stamp: tuple[int, int, int] = (0, 0, 0)

    @property
    def state(self) -> str:
        return "error" if self.errors else "ok"


def file_stamp(st: os.stat_result) -> tuple[int, int, int]:
    """What tells a changed file: inode (a swapped symlink target or a renamed-over file), mtime, size."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_file(root: Path, rel: str, previous: FileState | None) -> FileState:
    """Read ``root/rel`` and return its new state (see the module docstring)."""
    path = root / rel
    old = previous.objects if previous else {}
    state = FileState(rel)
    try:
        st = path.stat()
        state.stamp = file_stamp(st)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        state.errors.append(f"{rel}: cannot read: {exc}")
        state.objects = dict(old)
        return state
    docs = load_text(text, source=rel)
    if any(d.error for d in docs):
        state.errors.extend(f"{rel}:{d.line}: {d.error}" for d in docs if d.error)
        state.objects = dict(old)
        return state
    for doc in docs:
        if doc.obj is None:
            continue
        where = f"{rel}:{doc.line}"
        ident = identity(doc.obj)
        if ident is None:
            state.errors.append(f"{where}: not a Kubernetes object (needs apiVersion, kind, metadata.name)")
            continue
        group, version, kind, namespace, name = ident
        obj = ConfigObject(
            group, version, kind, namespace, name, doc.obj, ObjectRef("file", rel, doc.index, doc.line)
        )
        if obj.key in state.objects:
            state.errors.append(f"{where}: {obj.describe()} is defined twice in this file; keeping the first")
            continue
        with _tracer.start_as_current_span(
            "galley.validate", attributes={"galley.object": obj.describe()}
        ) as span:
            result = validate_object(doc.obj)
            span.set_attributes({"galley.source": where, "galley.valid": result.valid})
        state.warnings.extend(f"{where}: {obj.describe()}: {w}" for w in result.warnings)
        if group in ISTIO_GROUPS and (result.kind is None or not result.valid):
            problems = (
                "; ".join(str(e) for e in result.errors) or f"unrecognized type {group}/{version}/{kind}"
            )
            state.errors.append(f"{where}: {obj.describe()}: {problems}")
            if obj.key in old:
                state.objects[obj.key] = old[obj.key]
            continue
        state.objects[obj.key] = obj
    return state
