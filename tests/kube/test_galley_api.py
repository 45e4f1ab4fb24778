"""Galley against the real API server, with real traffic (issue 13 item 3).

``meshplane-galley`` runs as its own ServiceAccount (a TokenRequest token, ``k8s/``'s RBAC) in
Kubernetes mode against the session's API server. Istio resources, Services, Deployments (whose
Pods the real controller-manager makes), their EndpointSlices and Namespaces are created through
the API. The test kubelet gives every pod a network namespace on a test bridge and runs the pod's
command (a small HTTP server answering with its pod's name) inside it, so ``status.podIP`` and the
EndpointSlices hold addresses that real processes serve. A real Pilot and a real gateway Envoy on
the host then route requests by a VirtualService created through the API to the right pod.

The API-server restart test pauses Galley (SIGSTOP, a long stall or partition) while objects
change, compacts etcd and restarts kube-apiserver, so Galley's watches come back from versions
that no longer exist: ``410 Gone``, a relist, and only the real differences delivered, which the
bus contents and Galley's event counts (``/debug/sources``) show.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.shared.bus import Buckets, Bus, BusOptions
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until
from meshplane.shared.testing.kubefixtures import pod_network_marks
from meshplane.shared.testing.kubelet import TestKubelet
from meshplane.shared.testing.podnet import PodNetwork

pytestmark = pod_network_marks()

BIN = Path(sys.executable).parent
NET = "networking.istio.io"
SERVER = """
import http.server, json, os
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"pod": os.environ["POD_NAME"], "ip": os.environ["POD_IP"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Answer).serve_forever()
"""


def deployment(version: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": "web", "version": version}
    container = {"name": "web", "image": "meshplane.test/web", "command": [sys.executable, "-c", SERVER]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"web-{version}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(name: str) -> dict[str, Any]:
    port = {"name": "http", "port": 80, "targetPort": 8080}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [port]}}  # fmt: skip


def istio(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{NET}/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def to(subset: str) -> list[dict[str, Any]]:
    return [{"destination": {"host": "web", "port": {"number": 80}, "subset": subset}}]


def routes(default: str) -> dict[str, Any]:
    """The VirtualService's spec: ``x-version: v2`` to v2, everything else to ``default``."""
    by_header = {"match": [{"headers": {"x-version": {"exact": "v2"}}}], "route": to("v2")}
    return {"hosts": ["*"], "gateways": ["web-gw"], "http": [by_header, {"route": to(default)}]}


def compact_etcd(cluster: KubeCluster) -> int:
    """Compact etcd's history up to its current revision, as etcd's periodic compaction does."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"http://127.0.0.1:{cluster.etcd_port}{path}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            answer: dict[str, Any] = json.load(response)
        return answer

    revision = int(post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])  # any key: its header
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def bus_state(url: str) -> dict[str, dict[str, Any]]:
    """The config, services and workloads buckets, key -> message."""

    async def read() -> dict[str, dict[str, Any]]:
        bus = await Bus.connect(BusOptions(url=url))
        try:
            buckets = Buckets(bus)
            return {
                "config": await buckets.config.items(),
                "services": await buckets.services.items(),
                "workloads": await buckets.workloads.items(),
            }
        finally:
            await bus.close()

    return asyncio.run(read())


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
        return json.load(response)


def answer(url: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The pod's answer through the gateway, or None while Envoy cannot route it yet."""
    try:
        body: dict[str, Any] = get_json(url, headers)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body


@dataclass
class Mesh:
    namespace: str
    nats: NatsServer
    galley: ChildProcess
    galley_debug: int
    gateway_url: str
    network: PodNetwork
    core: Any
    apps: Any
    custom: Any

    def bus(self) -> dict[str, dict[str, Any]]:
        return bus_state(self.nats.url)

    def sources(self) -> dict[str, dict[str, Any]]:
        """Galley's per-resource reflector status, by API path."""
        found = get_json(f"http://127.0.0.1:{self.galley_debug}/debug/sources")
        return {r["path"]: r for r in found["resources"]}

    def create_istio(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        plural = f"{kind.lower()}s"
        self.custom.create_namespaced_custom_object(
            NET, "v1", self.namespace, plural, istio(kind, name, spec)
        )

    def config_key(self, kind: str, name: str) -> str:
        return config_key(NET, kind, self.namespace, name)

    def pods(self, version: str) -> list[Any]:
        found = self.core.list_namespaced_pod(self.namespace, label_selector=f"version={version}").items
        return [p for p in found if p.metadata.deletion_timestamp is None]

    def wait_bus(self, check: Callable[[dict[str, dict[str, Any]]], bool], what: str) -> None:
        wait_until(lambda: check(self.bus()), what, timeout=60)


def _start(name: str, argv: list[str], log: Path, ready: Callable[[], bool]) -> ChildProcess:
    process = ChildProcess(argv, log, die_with_parent=True, name=name)
    process.start()
    try:
        wait_until(ready, f"{name} ready", timeout=60, procs=[process])
    except BaseException:
        process.stop(timeout=10)
        raise
    return process


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
        return bool(response.status == 200)


@pytest.fixture(scope="module")
def mesh(
    kube_api: Any,
    kube_cluster: KubeCluster,
    applied_rbac: list[dict[str, Any]],
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mesh]:
    """Galley (as its ServiceAccount), a nats-server, Pilot, a gateway Envoy, the pod network and
    the test kubelet for one namespace of this module."""
    tmp = tmp_path_factory.mktemp("galley-api")
    core: Any = client.CoreV1Api(kube_api)
    namespace = f"gk-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"team": "a"}}})
    token = core.create_namespaced_service_account_token("galley", "meshplane-system", {"spec": {}})
    kubeconfig = kube_cluster.token_kubeconfig(tmp / "galley.kubeconfig", token.status.token)
    nats = NatsServer(store_dir=tmp / "nats", log_file=tmp / "nats.log")
    started: list[ChildProcess] = []
    envoy: EnvoyProcess | None = None
    network = PodNetwork(tmp / "pods").start()
    kubelet = TestKubelet(kube_api, {namespace}, network=network)
    try:
        nats.start()
        kubelet.start()
        monitoring, debug, grpc, http, admin, gateway_port = (free_port() for _ in range(6))
        started.append(
            _start(
                "galley",
                ["env", f"KUBECONFIG={kubeconfig}", str(BIN / "meshplane-galley"), "--nats-url", nats.url,
                 "--webhook-addr", f"127.0.0.1:{free_port()}",
                 "--monitoring-addr", f"127.0.0.1:{monitoring}", "--debug-addr", f"127.0.0.1:{debug}"],
                tmp / "galley.log",
                lambda: _ok(f"http://127.0.0.1:{monitoring}/readyz"),
            )
        )  # fmt: skip
        started.append(
            _start(
                "pilot",
                ["env", "PILOT_DEBOUNCE_AFTER=50ms", str(BIN / "meshplane-pilot"), "--nats-url", nats.url,
                 "--grpc-addr", f"127.0.0.1:{grpc}", "--http-addr", f"127.0.0.1:{http}",
                 "--debug-addr", "127.0.0.1:0", "--id", "pilot-kube", "--xds-plaintext"],
                tmp / "pilot.log",
                lambda: _ok(f"http://127.0.0.1:{http}/ready"),
            )
        )  # fmt: skip
        options = BootstrapOptions(
            proxy_type="router",
            node_id=f"router~127.0.0.1~gateway.{namespace}~{namespace}.svc.cluster.local",
            pilots=[f"127.0.0.1:{grpc}"],
            admin=f"127.0.0.1:{admin}",
            namespace=namespace,
            labels={"istio": "ingressgateway"},
        )
        bootstrap = tmp / "gateway.yaml"
        bootstrap.write_text(yaml.safe_dump(render_bootstrap(options)))
        envoy = EnvoyProcess(bootstrap, admin, tmp / "envoy.log").start()
        yield Mesh(
            namespace,
            nats,
            started[0],
            debug,
            f"http://127.0.0.1:{gateway_port}/",
            network,
            core,
            client.AppsV1Api(kube_api),
            client.CustomObjectsApi(kube_api),
        )
    finally:
        if envoy is not None:
            envoy.stop()
        for process in reversed(started):
            if process.running:
                os.kill(process.pid, signal.SIGCONT)  # in case a test stopped it
            process.stop(timeout=15)
        client.AppsV1Api(kube_api).delete_collection_namespaced_deployment(namespace)
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        kubelet.stop()
        network.close()
        core.delete_namespace(namespace)
        nats.stop()


@pytest.fixture(scope="module")
def deployed(mesh: Mesh) -> Mesh:
    """Two Deployments behind Service ``web``, a gateway, subsets and routes, all through the API."""
    ns = mesh.namespace
    for version in ("v1", "v2"):
        mesh.apps.create_namespaced_deployment(ns, deployment(version))
    mesh.core.create_namespaced_service(ns, service("web"))
    subsets = [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]
    mesh.create_istio(
        "DestinationRule", "web", {"host": "web", "subsets": subsets,
                                   "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    )  # fmt: skip
    port = int(mesh.gateway_url.rsplit(":", 1)[1].strip("/"))
    server = {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    mesh.create_istio("Gateway", "web-gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]})
    mesh.create_istio("VirtualService", "web", routes(default="v1"))
    return mesh


def test_istio_resources_services_pods_endpointslices_and_namespaces_reach_the_bus(deployed: Mesh) -> None:
    mesh, ns = deployed, deployed.namespace

    def complete(state: dict[str, dict[str, Any]]) -> bool:
        versions = {dict(w.labels).get("version") for w in state["workloads"].values() if w.namespace == ns}
        return (
            versions == {"v1", "v2"} and service_key(ns, f"web.{ns}.svc.cluster.local") in state["services"]
        )

    mesh.wait_bus(complete, "the Service and both Deployments' pods (via EndpointSlices) on the bus")
    state = mesh.bus()
    for kind, name in (("DestinationRule", "web"), ("Gateway", "web-gw"), ("VirtualService", "web")):
        assert state["config"][mesh.config_key(kind, name)].namespace == ns
    assert json.loads(state["config"][mesh.config_key("VirtualService", "web")].spec_json) == routes("v1")
    namespace = state["config"][config_key("core", "Namespace", "-", ns)]
    assert dict(namespace.labels)["team"] == "a"
    web = state["services"][service_key(ns, f"web.{ns}.svc.cluster.local")]
    assert [(p.name, p.number) for p in web.ports] == [("http", 80)]
    for version in ("v1", "v2"):
        (pod,) = mesh.pods(version)
        workload = state["workloads"][workload_key(ns, pod.metadata.name)]
        # The pod's address is the kubelet's, in the pod network: not loopback, not TEST-NET.
        assert workload.address == pod.status.pod_ip
        assert workload.address in {box.ip for box in mesh.network.sandboxes.values()}
        assert dict(workload.ports) == {"http": 8080}
        assert list(workload.services) == [f"web.{ns}.svc.cluster.local"]


def test_a_real_envoy_routes_real_traffic_by_the_virtual_service_to_the_right_pod(deployed: Mesh) -> None:
    mesh = deployed
    for version, headers in (("v1", {}), ("v2", {"x-version": "v2"})):
        (pod,) = mesh.pods(version)

        def reached(pod_name: str = pod.metadata.name, headers: dict[str, str] = headers) -> bool:
            found = answer(mesh.gateway_url, headers)
            return found is not None and found["pod"] == pod_name

        wait_until(reached, f"a request routed to {version}'s pod {pod.metadata.name}", timeout=60)
        (pod,) = mesh.pods(version)  # as it is now, with the address the kubelet gave it
        assert answer(mesh.gateway_url, headers) == {"pod": pod.metadata.name, "ip": pod.status.pod_ip}


def routed_to(mesh: Mesh, pod_name: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    def check() -> bool:
        found = answer(mesh.gateway_url, headers)
        return found is not None and found["pod"] == pod_name

    return check


def test_updates_and_deletes_follow_to_the_bus_and_to_the_traffic(deployed: Mesh) -> None:
    mesh, ns = deployed, deployed.namespace
    (v1,) = mesh.pods("v1")
    (v2,) = mesh.pods("v2")
    wait_until(routed_to(mesh, v1.metadata.name), "the default route to v1", timeout=60)
    patch = {"spec": routes(default="v2")}
    mesh.custom.patch_namespaced_custom_object(NET, "v1", ns, "virtualservices", "web", patch)
    wait_until(routed_to(mesh, v2.metadata.name), "the updated VirtualService sending all to v2", timeout=60)

    mesh.core.patch_namespace(ns, {"metadata": {"labels": {"team": "b"}}})
    namespace = config_key("core", "Namespace", "-", ns)
    mesh.wait_bus(lambda s: dict(s["config"][namespace].labels).get("team") == "b", "the new namespace label")

    alias = service_key(ns, f"web-alias.{ns}.svc.cluster.local")
    mesh.core.create_namespaced_service(ns, service("web-alias"))
    mesh.wait_bus(lambda s: alias in s["services"], "a second Service")
    mesh.core.delete_namespaced_service("web-alias", ns)
    mesh.wait_bus(lambda s: alias not in s["services"], "the deleted Service gone")

    # Scaled to zero: the controller-manager deletes the pod, the kubelet stops its process and
    # removes its network namespace, the EndpointSlice drops it, and so does the bus.
    mesh.apps.patch_namespaced_deployment_scale("web-v1", ns, {"spec": {"replicas": 0}})
    gone = workload_key(ns, v1.metadata.name)
    mesh.wait_bus(lambda s: gone not in s["workloads"], f"{v1.metadata.name} gone from the registry")
    wait_until(lambda: v1.metadata.uid not in mesh.network.sandboxes, "the pod's network namespace removed")
    assert routed_to(mesh, v2.metadata.name)()


def test_an_api_server_restart_and_a_410_relist_lose_nothing_and_duplicate_nothing(
    deployed: Mesh, kube_cluster: KubeCluster
) -> None:
    mesh, ns = deployed, deployed.namespace
    virtual_services, destination_rules = (
        f"/apis/{NET}/v1/virtualservices",
        f"/apis/{NET}/v1/destinationrules",
    )
    doomed = {"hosts": ["doomed.example.com"], "gateways": ["web-gw"], "http": [{"route": to("v2")}]}
    mesh.create_istio("VirtualService", "doomed", doomed)
    mesh.wait_bus(
        lambda s: mesh.config_key("VirtualService", "doomed") in s["config"], "VirtualService doomed"
    )
    readings = [mesh.sources()]

    def settled() -> bool:  # earlier tests' changes (pods going away) have all been counted
        readings.append(mesh.sources())
        return readings[-1] == readings[-2]

    wait_until(settled, "Galley's event counts to settle")
    before = readings[-1]
    pid = mesh.galley.pid
    os.kill(pid, signal.SIGSTOP)  # Galley misses everything from here on
    try:
        mesh.create_istio("VirtualService", "extra", {**doomed, "hosts": ["extra.example.com"]})
        mesh.custom.delete_namespaced_custom_object(NET, "v1", ns, "virtualservices", "doomed")
        label = {"metadata": {"labels": {"changed": "while-galley-was-away"}}}
        mesh.custom.patch_namespaced_custom_object(NET, "v1", ns, "destinationrules", "web", label)
        compact_etcd(kube_cluster)  # Galley's resourceVersions are history now
        kube_cluster.restart_apiserver()
    finally:
        os.kill(pid, signal.SIGCONT)

    def resumed() -> bool:  # every reflector watches again (after its relist)
        now = mesh.sources()
        return all(now[p]["watches"] > before[p]["watches"] for p in before if before[p]["watches"])

    wait_until(resumed, "Galley's reflectors to watch again after the restart", timeout=90)
    dr = mesh.config_key("DestinationRule", "web")
    mesh.wait_bus(
        lambda s: dict(s["config"][dr].labels).get("changed") == "while-galley-was-away",
        "the change made while Galley was away",
    )
    state, after = mesh.bus(), mesh.sources()
    # Nothing lost: exactly the objects that exist now.
    assert {k for k, v in state["config"].items() if v.namespace == ns} == {
        mesh.config_key("DestinationRule", "web"),
        mesh.config_key("Gateway", "web-gw"),
        mesh.config_key("VirtualService", "web"),
        mesh.config_key("VirtualService", "extra"),
    }
    # Nothing duplicated: the relists delivered the three changes and nothing else.
    assert after[virtual_services]["expired"] > before[virtual_services]["expired"], "no 410 relist happened"
    delta = {
        path: {kind: after[path]["events"][kind] - count for kind, count in before[path]["events"].items()}
        for path in before
    }
    expected = {path: {"ADDED": 0, "MODIFIED": 0, "DELETED": 0} for path in before}
    expected[virtual_services] = {"ADDED": 1, "MODIFIED": 0, "DELETED": 1}
    expected[destination_rules] = {"ADDED": 0, "MODIFIED": 1, "DELETED": 0}
    # Namespaces that other tests of this session deleted finish terminating on the namespace
    # controller's schedule, so their DELETEs can land in this window: only this test's own
    # namespace is compared (it is still there, unchanged, in the bus state above).
    for counts in (delta, expected):
        counts.pop("/api/v1/namespaces", None)
    assert config_key("core", "Namespace", "-", ns) in state["config"]
    assert delta == expected
    # and traffic still flows, to a pod that exists now (earlier tests may have scaled v1 to 0)
    running = {p.metadata.name for version in ("v1", "v2") for p in mesh.pods(version)}

    def served_by_a_running_pod() -> bool:
        found = answer(mesh.gateway_url, {"x-version": "v2"})
        return found is not None and found["pod"] in running

    wait_until(served_by_a_running_pod, "a request served by a running pod after the restart", timeout=60)
