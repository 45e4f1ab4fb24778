"""`meshctl analyze` against a live cluster through a kubeconfig, as `istioctl analyze` (issue 16
live mode; issue 13 item 10). The real API server holds the CRDs from `k8s/` and the objects each
test creates; meshctl runs as a process and reads them through the kubeconfig."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

FIELD_MANAGER = "meshplane-analyze-tests"


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshplane.ctl.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def dyn(kube_api: Any, k8s_base: list[dict[str, Any]]) -> dynamic.DynamicClient:
    """The base's CRDs applied server-side and Established."""
    crds = [o for o in k8s_base if o["kind"] == "CustomResourceDefinition"]
    d = dynamic.DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    resource = d.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    for crd in crds:
        resource.server_side_apply(
            body=crd, name=crd["metadata"]["name"], field_manager=FIELD_MANAGER, force_conflicts=True
        )
    extensions: Any = client.ApiextensionsV1Api(kube_api)

    def established() -> bool:
        for crd in crds:
            conditions = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions
            if not any(c.type == "Established" and c.status == "True" for c in conditions or []):
                return False
        return True

    wait_until(established, f"{len(crds)} CRDs Established")
    d.resources.invalidate_cache()
    return d


def create(d: dynamic.DynamicClient, namespace: str, obj: dict[str, Any]) -> None:
    obj["metadata"]["namespace"] = namespace
    d.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(body=obj, namespace=namespace)


def test_analyze_reads_istio_and_kubernetes_kinds_from_the_cluster(
    kube_cluster: KubeCluster, kube_api: Any, dyn: dynamic.DynamicClient, kube_namespace: str
) -> None:
    ns = kube_namespace
    core: Any = client.CoreV1Api(kube_api)
    core.patch_namespace(ns, {"metadata": {"labels": {"istio-injection": "enabled"}}})
    create(
        dyn,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web"}]},
        },
    )
    create(
        dyn,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80}]},
        },
    )
    create(
        dyn,
        ns,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "nowhere"}}]}]},
        },
    )
    create(
        dyn,
        ns,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
            },
        },
    )
    kubeconfig = str(kube_cluster.kubeconfig)

    run = meshctl("analyze", "--kubeconfig", kubeconfig, "-n", ns, "-o", "json")
    assert run.returncode == 0, run.stderr
    found = {(m["code"], m["level"], m["origin"]) for m in json.loads(run.stdout)}
    assert found >= {
        ("IST0101", "Error", f"VirtualService {ns}/web"),  # host "nowhere" (Istio kind)
        ("IST0103", "Warning", f"Pod {ns}/web-1"),  # injected namespace, no istio-proxy (Kubernetes kinds)
        ("IST0118", "Info", f"Service {ns}/web"),  # port name "web"
        # A live cluster gets no synthetic ingress gateway: nothing here runs istio=ingressgateway.
        ("IST0101", "Error", f"Gateway {ns}/edge"),
    }
    assert all(
        m["origin"].split(" ")[1].startswith(f"{ns}/") for m in json.loads(run.stdout) if "/" in m["origin"]
    )

    # -o log exits 79 on the Error, with istioctl's line and no file reference.
    run = meshctl("analyze", "--kubeconfig", kubeconfig, "-n", ns)
    assert run.returncode == 79, run.stderr
    assert f'Error [IST0101] (VirtualService {ns}/web) Referenced host not found: "nowhere"' in run.stdout

    # Files given with --use-kube are analyzed on top of the cluster: a Service file defines the host.
    nowhere = Path(kube_cluster.state_dir) / f"{ns}-nowhere.yaml"
    nowhere.write_text(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: nowhere, namespace: {ns}}}\n"
        "spec: {ports: [{name: http, port: 80}]}\n"
    )
    run = meshctl("analyze", "--kubeconfig", kubeconfig, "-n", ns, "--use-kube", "-o", "json", str(nowhere))
    assert ("IST0101", f"VirtualService {ns}/web") not in {
        (m["code"], m["origin"]) for m in json.loads(run.stdout)
    }

    # A namespace that does not exist: said so, exit 0 (istioctl).
    run = meshctl("analyze", "--kubeconfig", kubeconfig, "-n", "no-such-namespace")
    assert (run.returncode, run.stdout.strip()) == (0, 'namespace "no-such-namespace" not found')


def test_analyze_namespace_defaults_to_the_kube_context_namespace(
    kube_cluster: KubeCluster, kube_api: Any, dyn: dynamic.DynamicClient, kube_namespace: str, tmp_path: Path
) -> None:
    import yaml

    ns = kube_namespace
    create(
        dyn,
        ns,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "vs"},
            "spec": {"hosts": ["a.example.com"], "gateways": ["missing"]},
        },
    )
    config = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    for ctx in config["contexts"]:
        ctx["context"]["namespace"] = ns
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    run = meshctl("analyze", "--kubeconfig", str(kubeconfig), "-o", "json")
    origins = {(m["code"], m["origin"]) for m in json.loads(run.stdout)}
    assert ("IST0101", f"VirtualService {ns}/vs") in origins
    run = meshctl("analyze", "--kubeconfig", str(kubeconfig))
    assert run.returncode == 79
    assert f"(VirtualService {ns}/vs) Referenced gateway not found" in run.stdout
