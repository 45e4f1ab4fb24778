"""`meshctl validate`: check Istio YAML/JSON files with the same rules as Galley's webhook.

Exit codes: 0 every Istio resource is valid (warnings allowed), 1 some resource is invalid
(including documents that cannot be parsed), 2 usage or read errors (a missing or unreadable path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, error
from meshplane.shared.config import (
    MAX_DOCUMENT_BYTES,
    MAX_FILE_BYTES,
    Document,
    load_path,
    load_text,
    validate_object,
)
from meshplane.shared.meshconfig import (
    CONFIG_DIR_FILE,
    DEFAULT_ROOT_NAMESPACE,
    MeshConfigError,
    is_config_dir_mesh_file,
    parse_mesh_config,
)

SUFFIXES = (".yaml", ".yml", ".json")
EXIT_INVALID = EXIT_FINDINGS

_HELP = f"""\
Validate Istio configuration files offline, with the rules Istio's admission webhook applies.

PATH may be a file, a directory (searched recursively for *.yaml, *.yml, *.json) or '-' for
standard input. Kubernetes kinds outside Istio's API groups are listed as valid. A directory's
top-level mesh.yaml is its MeshConfig (as meshctl up reads it) and is validated as MeshConfig.
Limits: files over {MAX_FILE_BYTES // (1024 * 1024)} MiB and documents over \
{MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB are rejected.
Exit status: 0 all valid (warnings allowed), 1 something invalid, 2 usage or read error.
"""


@dataclass
class Entry:
    """The verdict on one document, as printed.

    ``line`` is where the document starts; ``locations`` holds the ``(line, column)`` of the
    field each error names (or of its nearest parent in the file), in the order of ``errors``.
    """

    file: str
    index: int
    line: int
    kind: str
    api_version: str
    namespace: str
    name: str
    valid: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    istio: bool = True
    locations: list[tuple[int, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        line, column = self.locations[0] if self.locations else (self.line, 1)
        return {
            "file": self.file,
            "index": self.index,
            "line": line,
            "column": column,
            "kind": self.kind,
            "apiVersion": self.api_version,
            "namespace": self.namespace,
            "name": self.name,
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            "errorLocations": [{"line": ln, "column": col} for ln, col in self.locations],
        }

    def as_text(self) -> str:
        mark = "\u2714" if self.valid else "\u2718"
        what = f"{self.kind or '<unknown kind>'} {self.namespace}/{self.name or '<unnamed>'}"
        head = f"{mark} {what} ({self.file}:{self.line})"
        if not self.istio and self.valid:
            head += " (not an Istio kind)"
        # Errors from the loader (no locations) already start with ``file:line``.
        errors = [f"  {e}" for e in self.errors]
        if self.locations:
            pairs = zip(self.errors, self.locations, strict=True)
            errors = [f"  {self.file}:{ln}:{col}: {e}" for e, (ln, col) in pairs]
        return "\n".join([head, *errors, *(f"  \u26a0 warning: {w}" for w in self.warnings)])


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="validate Istio configuration files",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-f", "--filename", action="append", required=True, metavar="PATH", help="file, directory or '-'"
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    p.add_argument(
        "-x", "--referential", action="store_true", help="accepted for istioctl compatibility (no effect)"
    )
    p.set_defaults(func=run)


def _files(target: str) -> Iterator[Path]:
    path = Path(target)
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        yield from sorted(p for p in found if not is_config_dir_mesh_file(p.relative_to(path)))
    else:
        yield path


def _mesh_entry(path: Path) -> Entry:
    """A config directory's ``mesh.yaml``, checked as MeshConfig (raises OSError)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        mesh = parse_mesh_config(text, str(path))
    except MeshConfigError as exc:
        return Entry(str(path), 0, 1, "MeshConfig", "", DEFAULT_ROOT_NAMESPACE, "istio", False, [str(exc)])
    warnings = [f"accepted, not applied by meshplane: {name}" for name in mesh.not_applied]
    return Entry(str(path), 0, 1, "MeshConfig", "", mesh.root_namespace, "istio", True, [], warnings)


def _entry(doc: Document) -> Entry:
    if doc.obj is None:
        error = doc.error or "unreadable document"
        return Entry(doc.source, doc.index, doc.line, "", "", "", "", False, [error])
    obj = doc.obj
    raw_meta = obj.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    result = validate_object(obj)
    return Entry(
        file=doc.source,
        index=doc.index,
        line=doc.line,
        kind=str(obj.get("kind") or ""),
        api_version=str(obj.get("apiVersion") or ""),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        valid=result.valid,
        errors=[str(i) for i in result.errors],
        warnings=[str(i) for i in result.warnings],
        istio=result.kind is not None,
        locations=[doc.locate(i.path) for i in result.errors],
    )


def _documents(targets: list[str]) -> tuple[list[Document], list[Entry], list[str]]:
    """The documents of ``targets``, the verdicts on their directories' MeshConfig, read errors."""
    docs: list[Document] = []
    meshes: list[Entry] = []
    read_errors: list[str] = []
    for target in targets:
        if target == "-":
            docs.extend(load_text(sys.stdin.buffer.read(), "<stdin>"))
            continue
        if not Path(target).exists():
            read_errors.append(f"{target}: no such file or directory")
            continue
        mesh_file = Path(target) / CONFIG_DIR_FILE
        if Path(target).is_dir() and mesh_file.is_file():
            try:
                meshes.append(_mesh_entry(mesh_file))
            except OSError as exc:
                read_errors.append(f"{mesh_file}: cannot read: {exc.strerror or exc}")
        for path in _files(target):
            try:
                docs.extend(load_path(path))
            except OSError as exc:
                read_errors.append(f"{path}: cannot read: {exc.strerror or exc}")
    return docs, meshes, read_errors


def run(args: argparse.Namespace) -> int:
    # pydantic scans every installed distribution's entry points for plugins when it builds the
    # first model (~30 ms, a tenth of this verb's run); meshplane uses none. Setting the variable
    # (even empty) before ``meshctl validate`` keeps the scan.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    docs, meshes, read_errors = _documents(list(args.filename))
    entries = meshes + [_entry(doc) for doc in docs]
    if args.output == "json":
        print(json.dumps([e.as_json() for e in entries], indent=2, ensure_ascii=False))
    else:
        for entry in entries:
            print(entry.as_text())
    for message in read_errors:
        error("validate", message)
    invalid = sum(1 for e in entries if not e.valid)
    if args.output == "text":
        print(f"{len(entries)} resource(s) checked, {invalid} invalid", file=sys.stderr)
    if read_errors:
        return EXIT_USAGE
    return EXIT_INVALID if invalid else EXIT_OK
