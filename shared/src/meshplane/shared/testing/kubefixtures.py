"""pytest fixtures for the real Kubernetes control plane (``kubeenv``), one per test session.

``kube_cluster`` starts etcd, kube-apiserver and kube-controller-manager the first time a test
asks for it and stops them at the end of the session. Mark such tests
``@pytest.mark.kube`` and ``@pytest.mark.xdist_group("kube")`` so that under ``-n 2 --dist
loadgroup`` they all run in one worker and share one API server. Where Go is absent and the
binaries were never built, the fixture skips and says why; where Go is present but the binaries
are missing, it fails and names the command that builds them (``make test`` builds them first).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshplane.shared.testing.kubeenv import KubeCluster, KubeUnavailable, find_binaries, wait_until


def pod_network_marks() -> list[pytest.MarkDecorator]:
    """The marks of a test module whose pods run real processes (``podnet``, the test kubelet):
    integration, kube, root, the "kube" xdist group, a skip where pod networks cannot be made,
    and a 300 s timeout."""
    from meshplane.shared.testing.podnet import unavailable_reason

    reason = unavailable_reason()
    return [
        pytest.mark.integration,
        pytest.mark.kube,
        pytest.mark.root,
        pytest.mark.xdist_group("kube"),
        pytest.mark.skipif(reason is not None, reason=str(reason)),
        pytest.mark.timeout(300),
    ]


def require_kube_binaries() -> Path:
    """The binaries' directory; skips the test where Go is absent, fails it where they are unbuilt."""
    try:
        return find_binaries()
    except KubeUnavailable as err:
        if shutil.which("go") is None:
            pytest.skip(f"no real Kubernetes API server here: {err}")
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster(tmp_path_factory.mktemp("kube"), require_kube_binaries(), die_with_parent=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the session's API server, as the cluster admin."""
    api = kube_cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_namespace(kube_api: Any) -> Iterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists; deleted after the test."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})

    def default_sa() -> bool:
        return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items)

    wait_until(default_sa, f"ServiceAccount {name}/default (made by the serviceaccount controller)")
    try:
        yield name
    finally:
        # Pods bound to a node wait for their kubelet to finish a graceful delete, and with the
        # test kubelet gone the namespace would stay Terminating: remove them at once.
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)


@contextlib.contextmanager
def private_cluster(
    state_dir: Path, kubelet_namespaces: set[str], create_namespaces: tuple[str, ...] = ()
) -> Iterator[KubeCluster]:
    """A cluster of the caller's own (for tests that own cluster-scoped objects, such as an
    install), with a test kubelet for ``kubelet_namespaces`` and ``create_namespaces`` made first."""
    from kubernetes import client

    from meshplane.shared.testing.kubelet import TestKubelet

    kube = KubeCluster(state_dir, require_kube_binaries(), die_with_parent=True)
    kube.start()
    api = kube.api_client()
    try:
        core: Any = client.CoreV1Api(api)
        for name in create_namespaces:
            core.create_namespace({"metadata": {"name": name}})
        with TestKubelet(api, kubelet_namespaces):
            yield kube
    finally:
        api.close()
        kube.stop()
