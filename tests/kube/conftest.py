"""Fixtures shared by the tests against the real API server: the rendered ``k8s/`` base, its RBAC."""

from __future__ import annotations

import functools
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from meshplane.shared.testing.kubeenv import wait_until

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


@pytest.fixture(scope="module")
def crds(kube_api: Any, k8s_base: list[dict[str, Any]]) -> None:
    """The base's CRDs applied server-side and Established (they stay for the session)."""
    dyn = dynamic.DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    definitions = [o for o in k8s_base if o["kind"] == "CustomResourceDefinition"]
    resource = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    for crd in definitions:
        resource.server_side_apply(body=crd, name=crd["metadata"]["name"], field_manager=FIELD_MANAGER)
    extensions: Any = client.ApiextensionsV1Api(kube_api)

    def established(name: str) -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for name in (crd["metadata"]["name"] for crd in definitions):
        wait_until(functools.partial(established, name), f"CRD {name} Established")
