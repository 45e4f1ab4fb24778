"""`meshplane-operator` against a real API server (issue 18 item 4): it rolls out an IstioOperator
object, reports status conditions, restores a Deployment edited by hand, survives SIGKILL, and
refuses a bad spec in status without touching the cluster. Its own cluster, as test_install's."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until
from meshplane.shared.testing.kubefixtures import private_cluster

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("operator")]

K8S = Path(__file__).resolve().parents[2] / "k8s"
NS = "meshplane-system"
FIELD_MANAGER = "operator-tests"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with private_cluster(tmp_path_factory.mktemp("operator-kube"), {NS}, (NS,)) as kube:
        yield kube


@pytest.fixture(scope="module")
def dyn(cluster: KubeCluster) -> Iterator[Any]:
    api = cluster.api_client()
    d = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    from meshplane.ctl.install.kustomize import render

    crd = next(o for o in render(K8S / "operator") if o["kind"] == "CustomResourceDefinition")
    d.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").server_side_apply(
        body=crd, name=crd["metadata"]["name"], field_manager=FIELD_MANAGER
    )
    extensions: Any = client.ApiextensionsV1Api(api)

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions
        return any(c.type == "Established" and c.status == "True" for c in conditions or [])

    wait_until(established, "the IstioOperator CRD established")
    yield d
    api.close()


def start_operator(cluster: KubeCluster, log: Path) -> ChildProcess:
    proc = ChildProcess(
        [
            sys.executable,
            "-m",
            "meshplane.ctl.operator.main",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--manifests",
            str(K8S),
            "--namespace",
            NS,
            "--resync-period",
            "30",
            "--debounce",
            "0.2",
            "--monitoring-addr",
            f"127.0.0.1:{free_port()}",
        ],
        log_file=log,
        die_with_parent=True,
        name="meshplane-operator",
    )
    proc.start()
    return proc


def iop(dyn: Any) -> Any:
    return dyn.resources.get(api_version="install.istio.io/v1alpha1", kind="IstioOperator")


def deployments(dyn: Any) -> Any:
    return dyn.resources.get(api_version="apps/v1", kind="Deployment")


def status_of(dyn: Any, name: str) -> dict[str, Any]:
    status: dict[str, Any] = iop(dyn).get(name=name, namespace=NS).to_dict().get("status") or {}
    return status


def pilot(dyn: Any) -> Any:
    return deployments(dyn).get(name="pilot", namespace=NS)


def test_operator_reconciles_reports_and_restores(cluster: KubeCluster, dyn: Any, tmp_path: Path) -> None:
    operator = start_operator(cluster, tmp_path / "operator.log")
    procs = [operator]
    try:
        spec = {"profile": "minimal", "components": {"cni": {"enabled": False}}}
        body = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": spec}
        iop(dyn).create(body={**body, "metadata": {"name": "main", "namespace": NS}}, namespace=NS)
        wait_until(
            lambda: status_of(dyn, "main").get("status") == "HEALTHY",
            "IstioOperator main HEALTHY",
            120,
            procs,
        )
        status = status_of(dyn, "main")
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Reconciled"]["status"] == "True" and conditions["Ready"]["status"] == "True"
        assert (
            status["componentStatus"]["Pilot"] == {"status": "HEALTHY"}
            and "Cni" not in status["componentStatus"]
        )
        assert pilot(dyn).spec.replicas == 1

        # A hand edit of what the install sets is undone.
        edit = {"name": "pilot", "image": "evil/pilot:1"}
        deployments(dyn).patch(
            body={"spec": {"replicas": 4, "template": {"spec": {"containers": [edit]}}}},
            name="pilot",
            namespace=NS,
            content_type="application/strategic-merge-patch+json",
        )
        wait_until(
            lambda: (
                (pilot(dyn).spec.replicas, pilot(dyn).spec.template.spec.containers[0].image)
                == (1, "meshplane/pilot:0.1.0")
            ),
            "the pilot Deployment restored",
            60,
            procs,
        )

        # An edit of the install resource rolls out.
        iop(dyn).patch(
            body={"spec": {"components": {"pilot": {"k8s": {"replicaCount": 2}}}}},
            name="main",
            namespace=NS,
            content_type="application/merge-patch+json",
        )
        wait_until(
            lambda: pilot(dyn).spec.replicas == 2, "pilot scaled to 2 by the install resource", 60, procs
        )

        # SIGKILLed, the operator restarts and catches up with an edit made while it was down.
        operator.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        operator.kill()
        deployments(dyn).patch(
            body={"spec": {"replicas": 7}},
            name="pilot",
            namespace=NS,
            content_type="application/merge-patch+json",
        )
        operator = start_operator(cluster, tmp_path / "operator2.log")
        procs = [operator]
        wait_until(
            lambda: pilot(dyn).spec.replicas == 2, "pilot restored after the operator's restart", 60, procs
        )

        # A bad spec: status says which field, and nothing in the cluster changes.
        iop(dyn).patch(
            body={"spec": {"components": {"pilot": {"k8s": {"replicas": 9}}}}},
            name="main",
            namespace=NS,
            content_type="application/merge-patch+json",
        )
        wait_until(
            lambda: status_of(dyn, "main").get("status") == "ERROR", "IstioOperator main in ERROR", 60, procs
        )
        status = status_of(dyn, "main")
        assert "spec.components.pilot.k8s.replicas: unknown field" in status["message"]
        reconciled = next(c for c in status["conditions"] if c["type"] == "Reconciled")
        assert (reconciled["status"], reconciled["reason"]) == ("False", "InvalidSpec")
        assert pilot(dyn).spec.replicas == 2
    finally:
        operator.stop()
