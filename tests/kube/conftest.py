"""Fixtures shared by the tests against the real API server: the rendered ``k8s/`` base."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

K8S = Path(__file__).resolve().parents[2] / "k8s"


@pytest.fixture(scope="session")
def k8s_base() -> list[dict[str, Any]]:
    """Every object the base kustomization renders to (k8s/render.py, the repository's renderer)."""
    render = runpy.run_path(str(K8S / "render.py"))["render"]
    objects: list[dict[str, Any]] = render(K8S / "base")
    return objects
