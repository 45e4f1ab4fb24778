"""`meshctl install`, `upgrade` and `uninstall` against a real API server and controllers (issue 18).

The cluster is this module's own (an install owns cluster-scoped objects the other kube tests
also apply); the test kubelet makes the pods of the install's namespaces Running and Ready, so the
Deployment, StatefulSet and DaemonSet controllers report the workloads ready, as a cluster would.
meshctl runs as a process with the cluster's kubeconfig.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import dynamic

from meshplane.shared.testing.kubeenv import KubeCluster, wait_until
from meshplane.shared.testing.kubefixtures import private_cluster

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("install")]

K8S = Path(__file__).resolve().parents[2] / "k8s"
OWNER = "install.operator.istio.io/owning-resource"
NAMESPACES = {"meshplane-system", "istio-ingress", "istio-egress"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    with private_cluster(tmp_path_factory.mktemp("install-kube"), NAMESPACES, ()) as kube:
        yield kube


@pytest.fixture(scope="module")
def dyn(cluster: KubeCluster) -> Iterator[Any]:
    api = cluster.api_client()
    yield dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    api.close()


def meshctl(cluster: KubeCluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "meshplane.ctl.main", *args, "--kubeconfig", str(cluster.kubeconfig)]
    if args[0] in ("install", "upgrade", "uninstall"):
        argv += ["-d", str(K8S)]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300, check=False)


def rendered(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "meshplane.ctl.main", "manifest", "generate", "-d", str(K8S), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def key(obj: Any) -> tuple[str, str | None, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace"), meta["name"])


def installed(dyn: Any, kinds: set[tuple[str, str]]) -> set[tuple[str, str | None, str]]:
    found = set()
    for api_version, kind in kinds:
        for item in dyn.resources.get(api_version=api_version, kind=kind).get(label_selector=OWNER).items:
            found.add(key(item.to_dict()))
    return found


def kinds_of(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["apiVersion"], o["kind"]) for o in objects} | {("v1", "Secret")}


def test_a_refused_confirmation_changes_nothing(cluster: KubeCluster, dyn: Any) -> None:
    done = meshctl(cluster, "install", stdin="n\n")
    assert done.returncode == 1, done.stderr
    assert 'profile "default" into the cluster. Proceed? (y/N)' in done.stdout
    assert installed(dyn, kinds_of(rendered())) == set()


def test_install_upgrade_and_uninstall(cluster: KubeCluster, dyn: Any) -> None:
    default = rendered()
    every_kind = kinds_of(default) | kinds_of(rendered("--set", "profile=demo"))

    done = meshctl(cluster, "install", "-y", "--readiness-timeout", "240")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✔ Pilot installed" in done.stdout and "✔ IngressGateways installed" in done.stdout
    assert "✔ Installation complete" in done.stdout
    have = installed(dyn, every_kind)
    assert {key(o) for o in default} <= have
    secrets = {k[2] for k in have if k[0] == "Secret"}
    assert {"nats-tls", "nats-auth", "galley-tls", "meshplane-bus-pilot", "meshplane-bus-galley"} <= secrets
    pilot = dyn.resources.get(api_version="apps/v1", kind="Deployment").get(
        name="pilot", namespace="meshplane-system"
    )
    assert pilot.status.availableReplicas == 1
    nodes = dyn.resources.get(api_version="apps/v1", kind="DaemonSet").get(
        name="node-agent", namespace="meshplane-system"
    )
    assert nodes.status.numberReady == 1

    # Upgrade: new images and flags, the gateway switched off; nothing of the old install is left over.
    sets = [
        "--set",
        "tag=0.2.0",
        "--set",
        "components.pilot.k8s.env[0].name=PILOT_PUSH_THROTTLE",
        "--set",
        "components.pilot.k8s.env[0].value=50",
        "--set",
        "components.ingressGateways[name:istio-ingressgateway].enabled=false",
    ]
    done = meshctl(cluster, "upgrade", "-y", "--readiness-timeout", "240", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed Deployment istio-ingress/istio-ingressgateway" in done.stdout
    upgraded = rendered(*sets)
    assert installed(dyn, every_kind) - {k for k in have if k[0] in ("Secret", "Namespace")} == {
        key(o) for o in upgraded if o["kind"] != "Namespace"
    } - {k for k in have if k[0] == "Secret"}
    pilot = dyn.resources.get(api_version="apps/v1", kind="Deployment").get(
        name="pilot", namespace="meshplane-system"
    )
    container = pilot.spec.template.spec.containers[0]
    assert container.image == "meshplane/pilot:0.2.0"
    assert {"name": "PILOT_PUSH_THROTTLE", "value": "50"} in [e.to_dict() for e in container.env]

    # Uninstall: everything but namespaces and CRDs; then purge takes the CRDs.
    done = meshctl(cluster, "uninstall", "-y", "--revision", "default")
    assert done.returncode == 0, done.stdout + done.stderr
    left = installed(dyn, every_kind)
    assert {k[0] for k in left} <= {"Namespace", "CustomResourceDefinition"}, left
    assert any(k[0] == "CustomResourceDefinition" for k in left)
    done = meshctl(cluster, "uninstall", "-y", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    # a deleted CRD lingers until the API server's finalizer has cleaned up (asynchronous)
    wait_until(
        lambda: {k[0] for k in installed(dyn, every_kind)} == {"Namespace"}, "the CRDs deleted by --purge"
    )


def test_unreachable_cluster_and_missing_choice_are_usage_errors(
    cluster: KubeCluster, tmp_path: Path
) -> None:
    done = meshctl(cluster, "uninstall", "-y")
    assert done.returncode == 2 and "--revision REVISION" in done.stderr
    config = tmp_path / "nowhere"
    config.write_text(cluster.kubeconfig.read_text().replace(cluster.server, "https://127.0.0.1:1"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane.ctl.main",
            "install",
            "-y",
            "-d",
            str(K8S),
            "--kubeconfig",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach the API server" in done.stderr and "Traceback" not in done.stderr
