"""Load Istio/Kubernetes objects from YAML or JSON text, one ``Document`` per object, never raising.

Limits: a file over ``MAX_FILE_BYTES`` (10 MiB) is rejected as a whole; a document over
``MAX_DOCUMENT_BYTES`` (1 MiB) is rejected on its own; a document whose aliases expand to more
than ``MAX_EXPANDED_NODES`` nodes (a "billion laughs" bomb) or that nests too deeply is rejected.
Every problem becomes a Document with ``error`` naming the file and line; the other documents
of the same file are still returned. Empty documents (``---`` alone) are skipped, and a
``kind: List`` (kubectl's) yields its ``items``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 200_000

_PARENT = re.compile(r"(?:\[\d+\]|\.?[^.\[\]]*)$")
_SEPARATOR = re.compile(rb"^---(?:[ \t].*)?$|^\.\.\.[ \t]*$")


@dataclass(frozen=True, slots=True)
class Document:
    """One object read from a file, or the reason it could not be read.

    ``index`` is the 0-based position among the file's non-empty documents (List items count
    one each); ``line`` is the 1-based line where the object starts. ``marks`` maps each field
    path, written as validation issues write it (``spec.http[0].route``), to the 1-based
    ``(line, column)`` of its key (or list item) in the file; empty for JSON.
    """

    source: str
    index: int
    line: int
    obj: dict[str, Any] | None = None
    error: str | None = None
    marks: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: str) -> tuple[int, int]:
        """The ``(line, column)`` of ``path`` or of its nearest marked parent; else the document's."""
        path = path.removesuffix(" (map key)")
        while path:
            if path in self.marks:
                return self.marks[path]
            parent = _PARENT.sub("", path, count=1)
            if parent == path:
                break
            path = parent
        return self.line, 1


@dataclass(frozen=True, slots=True)
class _Chunk:
    first_line: int  # 0-based line of the chunk's first line within the file
    data: bytes


def _split_documents(data: bytes) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    lines = data.splitlines(keepends=True)
    start = 0
    for number, raw in enumerate(lines):
        if _SEPARATOR.match(raw.rstrip(b"\r\n")):
            chunks.append(_Chunk(start, b"".join(lines[start:number])))
            start = number + 1
    chunks.append(_Chunk(start, b"".join(lines[start:])))
    return chunks


def _expanded_size(node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
    if depth > 200:
        raise ValueError("document is nested too deeply (more than 200 levels)")
    key = id(node)
    if key in memo:
        return memo[key]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, depth + 1) + _expanded_size(v, memo, depth + 1)
    memo[key] = min(size, MAX_EXPANDED_NODES + 1)
    return memo[key]


def _marks(node: yaml.Node, offset: int) -> dict[str, tuple[int, int]]:
    """Field path -> 1-based (line, column) of every key and list item under ``node``."""
    marks: dict[str, tuple[int, int]] = {}
    stack: list[tuple[str, yaml.Node]] = [("", node)]
    while stack and len(marks) <= MAX_EXPANDED_NODES:
        path, current = stack.pop()
        children: list[tuple[str, yaml.Node, yaml.Mark]] = []
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                name = str(key.value)
                children.append((f"{path}.{name}" if path else name, value, key.start_mark))
        elif isinstance(current, yaml.SequenceNode):
            children = [(f"{path}[{i}]", item, item.start_mark) for i, item in enumerate(current.value)]
        for child_path, child, mark in children:
            marks.setdefault(child_path, (offset + mark.line + 1, mark.column + 1))
            stack.append((child_path, child))
    return marks


def _where(source: str, line: int) -> str:
    return f"{source}:{line}"


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.docs: list[Document] = []

    def fail(self, line: int, message: str) -> None:
        self.docs.append(
            Document(self.source, len(self.docs), line, None, f"{_where(self.source, line)}: {message}")
        )

    def add(self, line: int, obj: object, node: yaml.Node | None, offset: int = 0) -> None:
        if not isinstance(obj, dict):
            self.fail(line, f"document is not a mapping (found {_type_name(obj)})")
            return
        if obj.get("kind") == "List" and "items" in obj:
            self._add_items(line, obj["items"], node, offset)
            return
        marks = _marks(node, offset) if node is not None else {}
        self.docs.append(Document(self.source, len(self.docs), line, obj, None, marks))

    def _add_items(self, line: int, items: object, node: yaml.Node | None, offset: int) -> None:
        if not isinstance(items, list):
            self.fail(line, f"List 'items' must be a list (found {_type_name(items)})")
            return
        item_nodes: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == "items" and isinstance(v, yaml.SequenceNode):
                    item_nodes = list(v.value)
        for i, item in enumerate(items):
            item_line = offset + item_nodes[i].start_mark.line + 1 if i < len(item_nodes) else line
            if not isinstance(item, dict):
                self.fail(item_line, f"List item {i} is not a mapping (found {_type_name(item)})")
            else:
                marks = _marks(item_nodes[i], offset) if i < len(item_nodes) else {}
                self.docs.append(Document(self.source, len(self.docs), item_line, item, None, marks))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _load_chunk(reader: _Reader, chunk: _Chunk) -> None:
    line = chunk.first_line + 1
    if len(chunk.data) > MAX_DOCUMENT_BYTES:
        reader.fail(line, f"document is larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB); not loaded")
        return
    try:
        text = chunk.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = line + chunk.data[: exc.start].count(b"\n")
        reader.fail(bad_line, f"not UTF-8 text (undecodable byte at offset {exc.start} of the document)")
        return
    if "\x00" in text:
        bad_line = line + text[: text.index("\x00")].count("\n")
        reader.fail(bad_line, "binary data (NUL byte) in document")
        return
    if not text.strip():
        return
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return
            line = chunk.first_line + node.start_mark.line + 1
            if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
                reader.fail(line, f"document expands to more than {MAX_EXPANDED_NODES} nodes (alias bomb?)")
                return
            obj = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        bad_line = chunk.first_line + (mark.line + 1 if mark else 1)
        problem = exc.problem or exc.context or "malformed YAML"
        reader.fail(bad_line, f"malformed YAML: {problem}")
        return
    except RecursionError:
        reader.fail(line, "document is nested too deeply")
        return
    except (yaml.YAMLError, ValueError) as exc:
        reader.fail(line, f"malformed YAML: {exc}")
        return
    reader.add(line, obj, node, chunk.first_line)


def _load_json(reader: _Reader, data: bytes) -> None:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        reader.fail(1 + data[: exc.start].count(b"\n"), "not UTF-8 text")
        return
    except json.JSONDecodeError as exc:
        reader.fail(exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})")
        return
    except RecursionError:
        reader.fail(1, "malformed JSON: nested too deeply")
        return
    if isinstance(value, list):
        value = {"kind": "List", "items": value}
    reader.add(1, value, None)


def load_text(text: str | bytes, source: str = "<input>") -> list[Document]:
    """Every object in ``text`` (multi-document YAML, or JSON when ``source`` ends in .json)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    reader = _Reader(source)
    if len(data) > MAX_FILE_BYTES:
        reader.fail(1, f"file is larger than {MAX_FILE_BYTES} bytes (10 MiB); not loaded")
        return reader.docs
    if source.endswith(".json"):
        _load_json(reader, data)
        return reader.docs
    for chunk in _split_documents(data):
        _load_chunk(reader, chunk)
    return reader.docs


def load_path(path: Path) -> list[Document]:
    """Every object in one file; directories are the caller's job.

    Raises:
        OSError: the file does not exist or cannot be read (callers report it as a read error).
    """
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    return load_text(data, str(path))
