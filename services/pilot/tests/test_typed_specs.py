"""Pilot reads Istio config only through the typed models: no ``.get("<Istio field>")`` on dicts.

A spec read as a dict turns a renamed or misspelt field into a silent None; through the models,
mypy rejects it. This scans Pilot's source for dict reads whose key is a field of any Istio
model (node metadata, environment and JSON documents use other keys).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

from pydantic.alias_generators import to_camel

from meshplane.pilot.model import config
from meshplane.shared.config import models
from meshplane.shared.config.models import IstioModel

SRC = Path(config.__file__).parents[1]


def _istio_field_names() -> set[str]:
    names: set[str] = set()
    for info in pkgutil.iter_modules(models.__path__, models.__name__ + "."):
        for obj in vars(importlib.import_module(info.name)).values():
            if isinstance(obj, type) and issubclass(obj, IstioModel) and obj is not IstioModel:
                names.update(f.alias or to_camel(name) for name, f in obj.model_fields.items())
    return names


def _dict_reads(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def test_the_scan_knows_istio_fields() -> None:
    names = _istio_field_names()
    assert {"trafficPolicy", "exportTo", "consecutive5xxErrors", "from", "jwksUri", "sniHosts"} <= names


def test_pilot_reads_no_istio_field_from_a_dict() -> None:
    names = _istio_field_names()
    found = [
        f"{path.relative_to(SRC)}:{line}: .get({key!r})"
        for path in sorted(SRC.rglob("*.py"))
        for line, key in _dict_reads(path)
        if key in names
    ]
    assert found == []
