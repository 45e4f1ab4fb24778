"""``meshctl proxy-status`` against a live cluster through its kubeconfig, as istioctl (issue 13
item 10).

A real Pilot runs as a pod's process: the test kubelet gives the pod a network namespace on a test
bridge, and Pilot serves ADS on ``0.0.0.0:15010`` and its debug endpoints on ``0.0.0.0:15014``
there, reading a nats-server bound on the bridge's gateway address. A real Envoy on the host
connects to the pod's address. meshctl, given only the kubeconfig, finds the Pilot pod by its
label and reads its ``/debug/syncz`` through the API server's pod proxy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until
from meshplane.shared.testing.kubefixtures import pod_network_marks
from meshplane.shared.testing.kubelet import TestKubelet
from meshplane.shared.testing.podnet import PodNetwork

pytestmark = pod_network_marks()

BIN = Path(sys.executable).parent
PILOT_LABELS = {"app.kubernetes.io/name": "pilot"}  # as k8s/base/pilot labels its pods


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshplane.ctl.main", *args], capture_output=True, text=True, timeout=120
    )


def pilot_pod(name: str, nats_url: str) -> dict[str, Any]:
    argv = [str(BIN / "meshplane-pilot"), "--nats-url", nats_url, "--grpc-addr", "0.0.0.0:15010",
            "--http-addr", "0.0.0.0:15014", "--xds-plaintext"]  # fmt: skip
    container = {"name": "pilot", "image": "meshplane/pilot", "command": argv,
                 "env": [{"name": "PILOT_DEBOUNCE_AFTER", "value": "50ms"}]}  # fmt: skip
    return {"metadata": {"name": name, "labels": PILOT_LABELS}, "spec": {"containers": [container]}}


@dataclass
class Cluster:
    namespace: str
    pilot: str
    proxy_id: str
    kubeconfig: str


@pytest.fixture(scope="module")
def cluster(
    kube_api: Any, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A Pilot pod in its own namespace, its bus on the bridge, and one sidecar Envoy connected to it."""
    tmp = tmp_path_factory.mktemp("proxy-status")
    core: Any = client.CoreV1Api(kube_api)
    namespace = f"ps-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    network = PodNetwork(tmp / "pods").start()
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log", host=network.gateway, plaintext=True)
    kubelet = TestKubelet(kube_api, {namespace}, network=network)
    envoy: EnvoyProcess | None = None
    try:
        nats.start()
        kubelet.start()
        core.create_namespaced_pod(namespace, pilot_pod("pilot-0", nats.url))

        def pod_ip() -> str | None:
            return core.read_namespaced_pod("pilot-0", namespace).status.pod_ip  # type: ignore[no-any-return]

        wait_until(lambda: bool(pod_ip()), "the Pilot pod's address")
        ip = pod_ip()
        wait_until(lambda: _ok(f"http://{ip}:15014/ready"), "Pilot ready in its pod", timeout=60)
        admin = free_port()
        proxy = f"web-1.{namespace}"
        options = BootstrapOptions(
            node_id=f"sidecar~127.0.0.1~{proxy}~{namespace}.svc.cluster.local",
            pilots=[f"{ip}:15010"],
            admin=f"127.0.0.1:{admin}",
            namespace=namespace,
        )
        bootstrap = tmp / "envoy.yaml"
        bootstrap.write_text(yaml.safe_dump(render_bootstrap(options)))
        envoy = EnvoyProcess(bootstrap, admin, tmp / "envoy.log").start()
        yield Cluster(namespace, "pilot-0", proxy, str(kube_cluster.kubeconfig))
    finally:
        if envoy is not None:
            envoy.stop()
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        kubelet.stop()
        network.close()
        core.delete_namespace(namespace)
        nats.stop()


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a test pod's address)
        return bool(response.status == 200)


def test_proxy_status_reads_every_pilot_pod_through_the_api_server(cluster: Cluster) -> None:
    args = ("proxy-status", "--kubeconfig", cluster.kubeconfig, "-i", cluster.namespace)
    runs: list[subprocess.CompletedProcess[str]] = []

    def synced() -> bool:
        runs.append(meshctl(*args))
        rows = [line.split() for line in runs[-1].stdout.splitlines()[1:]]
        return any(r[0] == cluster.proxy_id and r[2:4] == ["SYNCED", "SYNCED"] for r in rows)

    wait_until(synced, f"{cluster.proxy_id} SYNCED in meshctl proxy-status", timeout=60)
    run = runs[-1]
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.splitlines()
    assert header.split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION"]
    (row,) = [r.split() for r in rows if r.split()[0] == cluster.proxy_id]
    assert row[1] == "Kubernetes"
    assert row[-2] == cluster.pilot  # the pod it was read from

    one = meshctl(*args, cluster.proxy_id, "-o", "json")
    assert one.returncode == 0, one.stderr
    (entry,) = json.loads(one.stdout)
    assert (entry["pilot"], entry["proxy"], entry["cluster_status"]) == (
        cluster.pilot,
        cluster.proxy_id,
        "SYNCED",
    )

    missing = meshctl(*args, f"nobody.{cluster.namespace}")
    assert missing.returncode == 1
    assert f"'nobody.{cluster.namespace}' is not connected to any Pilot" in missing.stderr


def test_no_pilot_pods_is_a_clear_error(cluster: Cluster, kube_namespace: str) -> None:
    run = meshctl("proxy-status", "--kubeconfig", cluster.kubeconfig, "-i", kube_namespace)
    assert run.returncode == 2
    assert f"no running Pilot pods (app.kubernetes.io/name=pilot) in namespace {kube_namespace}" in run.stderr
    assert "Traceback" not in run.stderr
