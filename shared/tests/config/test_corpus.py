"""The bookinfo-like corpus: every valid document passes; every invalid one fails at its path.

Invalid documents name the field path their error must start with in the annotation
``test.meshplane.io/expect``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.shared.config import Document, load_path, validate_object

TESTDATA = Path(__file__).parent / "testdata"
EXPECT = "test.meshplane.io/expect"


def _docs(kind: str) -> list[Document]:
    files = sorted(p for p in (TESTDATA / kind).iterdir() if p.suffix in (".yaml", ".json"))
    return [d for f in files for d in load_path(f)]


def _id(doc: Document) -> str:
    assert doc.obj is not None
    return f"{Path(doc.source).name}#{doc.index}-{doc.obj['kind']}-{doc.obj['metadata']['name']}"


VALID = _docs("valid")
INVALID = _docs("invalid")


def test_corpus_covers_every_istio_kind() -> None:
    kinds = {d.obj["kind"] for d in VALID if d.obj}
    assert {
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "WorkloadEntry",
        "WorkloadGroup",
        "Sidecar",
        "EnvoyFilter",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "WasmPlugin",
        "ProxyConfig",
        "RequestAuthentication",
        "Telemetry",
    } <= kinds


@pytest.mark.parametrize("doc", VALID, ids=[_id(d) for d in VALID])
def test_valid_corpus(doc: Document) -> None:
    assert doc.error is None
    result = validate_object(doc.obj)
    assert result.valid, [str(e) for e in result.errors]


@pytest.mark.parametrize("doc", INVALID, ids=[_id(d) for d in INVALID])
def test_invalid_corpus(doc: Document) -> None:
    assert doc.obj is not None
    expected = doc.obj["metadata"]["annotations"][EXPECT]
    result = validate_object(doc.obj)
    assert not result.valid
    assert any(e.path.startswith(expected) for e in result.errors), [str(e) for e in result.errors]
