"""``meshctl proxy-status`` against a live cluster through its kubeconfig, as istioctl (issue 13
item 10).

Two real Pilots run as pods' processes: the test kubelet gives each pod a network namespace on a
test bridge, and Pilot serves plaintext ADS on its default ``0.0.0.0:15010`` there, monitoring
on ``0.0.0.0:15014`` as ``k8s/`` deploys it, and its debug endpoints on the default
``127.0.0.1:8080``, the pod's loopback, reading a nats-server bound on the bridge's gateway
address. A real Envoy on the host connects to each pod's address. meshctl, given only the
kubeconfig, finds the Pilot pods by their label and reads each one's ``/debug/syncz`` through the
API server's pod proxy; the other debug endpoints cannot be reached from outside the pod.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

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
    argv = [str(BIN / "meshplane-pilot"), "--nats-url", nats_url, "--http-addr", "0.0.0.0:15014",
            "--xds-plaintext"]  # fmt: skip
    container = {"name": "pilot", "image": "meshplane/pilot", "command": argv,
                 "env": [{"name": "PILOT_DEBOUNCE_AFTER", "value": "50ms"}]}  # fmt: skip
    return {"metadata": {"name": name, "labels": PILOT_LABELS}, "spec": {"containers": [container]}}


@dataclass
class Cluster:
    namespace: str
    #: proxy id -> the Pilot pod its Envoy is connected to
    proxies: dict[str, str]
    kubeconfig: str
    #: Pilot pod -> its address
    ips: dict[str, str]
    network: PodNetwork


PILOTS = ("pilot-0", "pilot-1")


@pytest.fixture(scope="module")
def cluster(
    kube_api: Any, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two Pilot pods in their own namespace, their bus on the bridge, and one gateway Envoy
    connected to each (``gateway-N`` to ``pilot-N``)."""
    tmp = tmp_path_factory.mktemp("proxy-status")
    core: Any = client.CoreV1Api(kube_api)
    namespace = f"ps-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    network = PodNetwork(tmp / "pods").start()
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log", host=network.gateway, plaintext=True)
    kubelet = TestKubelet(kube_api, {namespace}, network=network)
    envoys: list[EnvoyProcess] = []
    try:
        nats.start()
        kubelet.start()
        for pilot in PILOTS:
            core.create_namespaced_pod(namespace, pilot_pod(pilot, nats.url))
        proxies, ips = {}, {}
        for n, pilot in enumerate(PILOTS):
            ips[pilot] = ip = _ready_pod_ip(core, namespace, pilot)
            admin = free_port()
            proxy = f"gateway-{n}.{namespace}"
            options = BootstrapOptions(
                # Gateways: with no Gateway resource they bind no listener (a sidecar would take
                # the host's 15001/15006), so both Envoys share the host.
                proxy_type="router",
                node_id=f"router~127.0.0.1~{proxy}~{namespace}.svc.cluster.local",
                labels={"istio": "ingressgateway"},
                pilots=[f"{ip}:15010"],
                admin=f"127.0.0.1:{admin}",
                namespace=namespace,
            )
            bootstrap = tmp / f"envoy-{n}.yaml"
            bootstrap.write_text(yaml.safe_dump(render_bootstrap(options)))
            envoys.append(EnvoyProcess(bootstrap, admin, tmp / f"envoy-{n}.log").start())
            proxies[proxy] = pilot
        yield Cluster(namespace, proxies, str(kube_cluster.kubeconfig), ips, network)
    finally:
        for envoy in envoys:
            envoy.stop()
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        kubelet.stop()
        network.close()
        core.delete_namespace(namespace)
        nats.stop()


def _ready_pod_ip(core: Any, namespace: str, name: str) -> str:
    """The pod's address, once its Pilot answers ``/ready`` there."""

    def pod_ip() -> str:
        return str(core.read_namespaced_pod(name, namespace).status.pod_ip or "")

    wait_until(lambda: bool(pod_ip()), f"pod {name}'s address")
    ip = pod_ip()
    wait_until(lambda: _ok(f"http://{ip}:15014/ready"), f"Pilot ready in pod {name}", timeout=60)
    return ip


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a test pod's address)
        return bool(response.status == 200)


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_proxy_status_reads_every_pilot_pod_through_the_api_server(cluster: Cluster) -> None:
    args = ("proxy-status", "--kubeconfig", cluster.kubeconfig, "-i", cluster.namespace)
    runs: list[subprocess.CompletedProcess[str]] = []

    def synced() -> bool:
        runs.append(meshctl(*args))
        rows = {columns(line)[0]: columns(line) for line in runs[-1].stdout.splitlines()[1:]}
        return all(p in rows and rows[p][2:4] == ["SYNCED", "SYNCED"] for p in cluster.proxies)

    try:
        wait_until(synced, f"{sorted(cluster.proxies)} SYNCED in meshctl proxy-status", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it last printed:\n{runs[-1].stdout}{runs[-1].stderr}") from None
    run = runs[-1]
    assert run.returncode == 0, run.stderr
    header, *lines = run.stdout.splitlines()
    assert columns(header) == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION"]
    rows = [columns(line) for line in lines]
    # One row per proxy, each naming the Pilot pod it is connected to. Without Services in the
    # mesh no cluster uses EDS and no listener RDS: Istio's NOT SENT for both.
    assert sorted(r[:7] for r in rows) == [
        [proxy, "Kubernetes", "SYNCED", "SYNCED", "NOT SENT", "NOT SENT", pilot]
        for proxy, pilot in sorted(cluster.proxies.items())
    ]

    proxy, pilot = sorted(cluster.proxies.items())[1]
    one = meshctl(*args, proxy, "-o", "json")
    assert one.returncode == 0, one.stderr
    (entry,) = json.loads(one.stdout)
    assert (entry["pilot"], entry["proxy"], entry["cluster_status"]) == (pilot, proxy, "SYNCED")
    assert [r[7] for r in rows if r[0] == proxy] == [entry["proxy_version"]]

    missing = meshctl(*args, f"nobody.{cluster.namespace}")
    assert missing.returncode == 1
    assert f"'nobody.{cluster.namespace}' is not connected to any Pilot" in missing.stderr


def test_no_pilot_pods_is_a_clear_error(cluster: Cluster, kube_namespace: str) -> None:
    run = meshctl("proxy-status", "--kubeconfig", cluster.kubeconfig, "-i", kube_namespace)
    assert run.returncode == 2
    assert f"no running Pilot pods (app.kubernetes.io/name=pilot) in namespace {kube_namespace}" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_pilot_pod_whose_debug_port_does_not_answer_is_a_clear_error(
    cluster: Cluster, kube_api: Any
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    ns, name = cluster.namespace, "pilot-silent"
    idle = [sys.executable, "-c", "import time; time.sleep(600)"]
    silent = {"name": "pilot", "image": "meshplane/pilot", "command": idle}
    pod = {"metadata": {"name": name, "labels": PILOT_LABELS}, "spec": {"containers": [silent]}}
    core.create_namespaced_pod(ns, pod)
    try:
        wait_until(lambda: core.read_namespaced_pod(name, ns).status.phase == "Running", f"{name} Running")
        run = meshctl("proxy-status", "--kubeconfig", cluster.kubeconfig, "-i", ns)
        assert run.returncode == 2
        expected = f"meshctl proxy-status: cannot read /debug/syncz of Pilot pod {ns}/{name}: HTTP "
        assert run.stderr.startswith(expected), run.stderr
        assert "Traceback" not in run.stderr
    finally:
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        wait_until(lambda: name not in {p.metadata.name for p in core.list_namespaced_pod(ns).items}, "gone")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a test pod's address)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_debug_endpoints_answer_only_inside_the_pod(cluster: Cluster, kube_api: Any) -> None:
    """From the node (a non-loopback address), through the API server's pod proxy and from inside
    the pod's own network namespace: only the pod itself reaches /debug beyond syncz."""
    pilot = PILOTS[0]
    ip = cluster.ips[pilot]
    # monitoring, on the pod's address: metrics, and syncz for meshctl proxy-status
    status, metrics = _get(f"http://{ip}:15014/metrics")
    assert status == 200 and "pilot_xds " in metrics
    assert _get(f"http://{ip}:15014/debug/syncz")[0] == 200
    # ... but no other debug endpoint there
    assert _get(f"http://{ip}:15014/debug/configz")[0] == 404
    assert _get(f"http://{ip}:15014/debug/config_dump?proxyID=gateway-0.{cluster.namespace}")[0] == 404
    # the debug port is not open on the pod's address at all
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"http://{ip}:8080/debug/configz", timeout=5)  # noqa: S310
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    # nor through the API server, which can only dial the pod's address
    core: Any = client.CoreV1Api(kube_api)
    with pytest.raises(ApiException) as proxied:
        core.connect_get_namespaced_pod_proxy_with_path(
            f"{pilot}:8080", cluster.namespace, "debug/configz", _request_timeout=(5, 15)
        )
    assert proxied.value.status >= 500
    # inside the pod, on its loopback, every debug endpoint answers
    box = next(b for b in cluster.network.sandboxes.values() if b.ip == ip)
    fetch = (
        "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    inside = subprocess.run(
        ["nsenter", f"--net={box.path}", sys.executable, "-c", fetch, "http://127.0.0.1:8080/debug/configz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout) == []  # no config in this namespace's bus
