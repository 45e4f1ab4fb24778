"""The loader: every bad input becomes a Document error naming file and line; others still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshplane.shared.config import MAX_DOCUMENT_BYTES, MAX_FILE_BYTES, load_path, load_text

GOOD = "apiVersion: v1\nkind: Service\nmetadata:\n  name: good\n"


def test_multi_document_yaml_keeps_indexes_and_lines() -> None:
    text = "# comment\n" + GOOD + "---\n" + GOOD.replace("good", "second")
    docs = load_text(text, "svc.yaml")
    assert [(d.index, d.line, d.obj["metadata"]["name"] if d.obj else None) for d in docs] == [
        (0, 2, "good"),
        (1, 7, "second"),
    ]
    assert all(d.error is None and d.source == "svc.yaml" for d in docs)


def test_empty_documents_are_skipped() -> None:
    docs = load_text("---\n---\n\n---\n" + GOOD + "---\n# only a comment\n---\n", "a.yaml")
    assert len(docs) == 1 and docs[0].obj is not None and docs[0].index == 0


def test_malformed_yaml_names_file_and_line_and_keeps_other_documents() -> None:
    text = GOOD + "---\nkind: [unclosed\nfoo: bar\n---\n" + GOOD.replace("good", "after")
    docs = load_text(text, "bad.yaml")
    assert len(docs) == 3
    assert docs[0].obj is not None
    assert docs[1].obj is None and docs[1].error is not None
    assert docs[1].error.startswith("bad.yaml:") and "malformed YAML" in docs[1].error
    line = int(docs[1].error.split(":")[1])
    assert 6 <= line <= 8
    assert docs[2].obj is not None and docs[2].obj["metadata"]["name"] == "after"


def test_bad_indentation_reports_its_line() -> None:
    docs = load_text("a: 1\n b: 2\n", "indent.yaml")
    assert docs[0].error is not None and docs[0].error.startswith("indent.yaml:")


@pytest.mark.parametrize(
    ("text", "found"),
    [("- a\n- b\n", "a list"), ("just a string\n", "a string"), ("42\n", "int"), ("null\n", "null")],
)
def test_document_that_is_not_a_mapping(text: str, found: str) -> None:
    docs = load_text(GOOD + "---\n" + text, "x.yaml")
    assert docs[0].obj is not None
    assert docs[1].error == f"x.yaml:6: document is not a mapping (found {found})"


def test_undecodable_bytes_reject_only_that_document() -> None:
    data = GOOD.encode() + b"---\nkind: \xff\xfe\n---\n" + GOOD.encode()
    docs = load_text(data, "bin.yaml")
    assert len(docs) == 3
    assert docs[1].error is not None and "bin.yaml:6" in docs[1].error and "UTF-8" in docs[1].error
    assert docs[0].obj is not None and docs[2].obj is not None


def test_nul_bytes_are_binary_junk() -> None:
    docs = load_text(b"\x00\x01\x02garbage\n---\n" + GOOD.encode(), "junk.yaml")
    assert docs[0].error is not None and "NUL" in docs[0].error and docs[0].error.startswith("junk.yaml:1")
    assert docs[1].obj is not None


def test_random_binary_file_never_raises() -> None:
    data = bytes(range(256)) * 64
    docs = load_text(data, "random.bin")
    assert docs and all(d.error for d in docs)


def test_huge_document_is_rejected_alone() -> None:
    big = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  blob: "
        + "x" * MAX_DOCUMENT_BYTES
        + "\n"
    )
    docs = load_text(big + "---\n" + GOOD, "big.yaml")
    assert docs[0].error is not None and "1 MiB" in docs[0].error and docs[0].error.startswith("big.yaml:1")
    assert docs[1].obj is not None


def test_huge_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    chunk = GOOD + "---\n"
    path.write_text(chunk * (MAX_FILE_BYTES // len(chunk) + 10))
    docs = load_path(path)
    assert len(docs) == 1 and docs[0].error is not None and "10 MiB" in docs[0].error


def test_alias_bomb_is_rejected() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    docs = load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert docs[0].error is not None and "expands" in docs[0].error


def test_deep_nesting_is_rejected() -> None:
    docs = load_text("a: " + "[" * 500 + "]" * 500 + "\n", "deep.yaml")
    assert docs[0].error is not None and "deep.yaml:1" in docs[0].error


def test_kubectl_list_yields_items_with_their_lines() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n"
        "- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n- 7\n"
    )
    docs = load_text(text, "list.yaml")
    assert [(d.index, d.line) for d in docs] == [(0, 4), (1, 7), (2, 10)]
    assert docs[2].error is not None and "List item 2 is not a mapping" in docs[2].error


def test_list_items_not_a_list() -> None:
    docs = load_text("kind: List\nitems: {a: 1}\n", "l.yaml")
    assert docs[0].error is not None and "items" in docs[0].error


def test_json_single_object_and_list(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}))
    assert [d.obj["metadata"]["name"] for d in load_path(one) if d.obj] == ["a"]
    many = tmp_path / "many.json"
    items = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": n}} for n in ("a", "b")]
    many.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    assert [d.obj["metadata"]["name"] for d in load_path(many) if d.obj] == ["a", "b"]


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "kind": "Service",\n  "metadata": {\n}\n')
    docs = load_path(path)
    assert len(docs) == 1 and docs[0].error is not None
    assert docs[0].error.startswith(f"{path}:") and "malformed JSON" in docs[0].error


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('"hello"')
    docs = load_path(path)
    assert docs[0].error is not None and "not a mapping" in docs[0].error


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_path(tmp_path / "nope.yaml")


def test_document_separator_with_trailing_text_and_crlf() -> None:
    text = GOOD.replace("\n", "\r\n") + "--- # next\r\n" + GOOD.replace("good", "two")
    docs = load_text(text, "crlf.yaml")
    assert [d.obj["metadata"]["name"] for d in docs if d.obj] == ["good", "two"]


def test_locate_gives_the_line_and_column_of_a_field_or_its_nearest_parent() -> None:
    text = (
        GOOD
        + "---\n"
        + "kind: List\n"
        + "items:\n"
        + "- kind: VirtualService\n"
        + "  metadata:\n"
        + "    labels: {app.kubernetes.io/name: r}\n"
        + "  spec:\n"
        + "    http:\n"
        + "    - route:\n"
        + "      - destination: {host: r}\n"
    )
    first, item = load_text(text, "x.yaml")
    assert first.locate("metadata.name") == (4, 3)
    assert item.line == 8
    assert item.locate("spec.http[0].route[0].destination.host") == (14, 23)
    assert item.locate("spec.http[0].route[0].destination.port") == (14, 9)  # absent: its parent
    assert item.locate("metadata.labels.app.kubernetes.io/name") == (10, 14)  # a key with dots
    assert item.locate("spec.http[0] (map key)") == (13, 7)
    assert item.locate("nowhere[") == (8, 1)  # the document's own line
    (from_json,) = load_text('{"kind": "Service",\n "spec": {}}', "x.json")
    assert from_json.locate("spec") == (1, 1)  # JSON carries no marks: the document's line
