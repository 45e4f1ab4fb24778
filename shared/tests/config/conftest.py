"""Helpers for the validation rule tables: build a full object and check verdict + field path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from meshplane.shared.config import lookup_kind, validate_object
from meshplane.shared.config.kinds import ALL_KINDS

CaseChecker = Callable[..., None]


def _group_of(kind: str) -> str:
    for info in ALL_KINDS:
        if info.kind == kind and info.is_istio:
            return info.group
    raise KeyError(kind)


def run_case(kind: str, spec: Any, valid: bool, path: str | None, *, name: str = "test", **meta: Any) -> None:
    """Validate ``spec`` (a dict or YAML text) as ``kind``.

    Invalid cases must report an error whose path starts with ``path``. Valid cases must have no
    errors and, when ``path`` is given, a warning whose path starts with it.
    """
    if isinstance(spec, str):
        spec = yaml.safe_load(spec)
    group = _group_of(kind)
    info = lookup_kind(group, kind)
    assert info is not None
    obj = {
        "apiVersion": f"{group}/{info.versions[0]}",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": spec,
    }
    result = validate_object(obj)
    errors = [str(e) for e in result.errors]
    warnings = [str(w) for w in result.warnings]
    if valid:
        assert result.valid, f"expected valid, got errors {errors}"
        if path is not None:
            assert any(w.path.startswith(path) for w in result.warnings), f"no warning at {path}: {warnings}"
    else:
        assert not result.valid, f"expected invalid (at {path}), got valid; warnings {warnings}"
        assert path is not None
        assert any(e.path.startswith(path) for e in result.errors), f"no error at {path}: {errors}"


@pytest.fixture
def check_case() -> CaseChecker:
    return run_case
