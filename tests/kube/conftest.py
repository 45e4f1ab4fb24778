"""Fixtures shared by the tests against the real API server: the rendered ``k8s/`` base, its RBAC."""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import dynamic

K8S = Path(__file__).resolve().parents[2] / "k8s"
FIELD_MANAGER = "meshplane-rbac-tests"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture(scope="session")
def k8s_base() -> list[dict[str, Any]]:
    """Every object the base kustomization renders to (k8s/render.py, the repository's renderer)."""
    render = runpy.run_path(str(K8S / "render.py"))["render"]
    objects: list[dict[str, Any]] = render(K8S / "base")
    return objects


@pytest.fixture(scope="session")
def k8s_gateway() -> list[dict[str, Any]]:
    """The objects of ``k8s/gateway`` (the ingress gateway's account, in its own namespace)."""
    render = runpy.run_path(str(K8S / "render.py"))["render"]
    objects: list[dict[str, Any]] = render(K8S / "gateway")
    return objects


@pytest.fixture(scope="module")
def applied_rbac(
    kube_api: Any, k8s_base: list[dict[str, Any]], k8s_gateway: list[dict[str, Any]]
) -> Iterator[list[dict[str, Any]]]:
    """The Namespaces and RBAC objects of the base and of ``k8s/gateway``, applied server-side;
    the RBAC objects removed after."""
    dyn = dynamic.DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    rendered = k8s_base + k8s_gateway
    namespace = [o for o in rendered if o["kind"] == "Namespace"]
    objects = [o for o in rendered if o["kind"] in RBAC_KINDS]

    def resource(obj: dict[str, Any]) -> Any:
        return dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    for obj in namespace + objects:
        resource(obj).server_side_apply(
            body=obj,
            name=obj["metadata"]["name"],
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
    try:
        yield objects
    finally:
        # The namespace stays: other kube tests of this session install into it too.
        for obj in objects:
            resource(obj).delete(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
