"""Fixtures for the deployment checks: the rendered kustomizations and the pinned schemas.

Nothing here runs Docker or Kubernetes. Manifests are rendered by k8s/render.py and validated
against the Kubernetes JSON schemas that the kubernetes-validate package ships for one pinned
Kubernetes version.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"

#: The Kubernetes release the manifests are checked against (schemas from kubernetes-validate).
KUBERNETES_VERSION = "1.33.0"

KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/prod"]


def load_script(name: str) -> ModuleType:
    """Import k8s/<name>.py (a script, not an installed module) under a private name."""
    spec = importlib.util.spec_from_file_location(f"meshplane_k8s_{name}", K8S / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def k8s_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Strict schema errors of ``objects`` for the pinned Kubernetes, one line per object."""
    errors = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


class Manifests:
    """The objects one kustomization renders to, with lookups by kind and name."""

    def __init__(self, name: str, objects: list[dict[str, Any]]) -> None:
        self.name = name
        self.objects = objects

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}]


@pytest.fixture(scope="session")
def kustomize() -> ModuleType:
    return load_script("render")


@pytest.fixture(scope="session")
def gen_crds() -> ModuleType:
    return load_script("gen_crds")


@pytest.fixture(scope="session")
def all_rendered(kustomize: ModuleType) -> dict[str, Manifests]:
    return {name: Manifests(name, kustomize.render(K8S / name)) for name in KUSTOMIZATIONS}


@pytest.fixture(params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest, all_rendered: dict[str, Manifests]) -> Manifests:
    """Each kustomization in turn: base, dev and prod."""
    return all_rendered[request.param]


@pytest.fixture(scope="session")
def base(all_rendered: dict[str, Manifests]) -> Manifests:
    return all_rendered["base"]


@pytest.fixture(scope="session")
def prod(all_rendered: dict[str, Manifests]) -> Manifests:
    return all_rendered["overlays/prod"]


@pytest.fixture(scope="session")
def dev(all_rendered: dict[str, Manifests]) -> Manifests:
    return all_rendered["overlays/dev"]
