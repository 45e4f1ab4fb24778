"""Galley reads the MeshConfig from the ``istio`` ConfigMap of its namespace through the API (issue 15
item 1), as its ServiceAccount (``k8s/``'s RBAC: that one ConfigMap, by name): an edit of the
ConfigMap reaches Pilot's ``/debug/mesh`` through the bus, with no volume and no kubelet sync; an
edit that does not parse is refused in Galley's log naming the field, and the last good one stays;
a deleted ConfigMap means Istio's defaults, as for istiod."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

BIN = Path(sys.executable).parent
NAMESPACE = "meshplane-system"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def configmap(mesh: str) -> dict[str, Any]:
    return {"metadata": {"name": "istio", "namespace": NAMESPACE}, "data": {"mesh": mesh}}


@pytest.fixture
def core(kube_api: Any) -> Iterator[Any]:
    """The API, with the namespace's ``istio`` ConfigMap put back as it was (another test on the
    same cluster may have applied k8s/base, which carries one)."""
    core: Any = client.CoreV1Api(kube_api)
    try:
        before = core.read_namespaced_config_map("istio", NAMESPACE)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        before = None
    try:
        yield core
    finally:
        try:
            core.delete_namespaced_config_map("istio", NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if before is not None:
            meta = {
                "name": "istio",
                "labels": before.metadata.labels,
                "annotations": before.metadata.annotations,
            }
            core.create_namespaced_config_map(NAMESPACE, {"metadata": meta, "data": before.data})


def put_configmap(core: Any, mesh: str) -> None:
    try:
        core.create_namespaced_config_map(NAMESPACE, configmap(mesh))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map("istio", NAMESPACE, configmap(mesh))


def test_an_edit_of_the_istio_configmap_reaches_pilot_and_a_bad_one_is_refused(
    core: Any, kube_cluster: KubeCluster, applied_rbac: list[dict[str, Any]], tmp_path: Path
) -> None:
    put_configmap(core, "trustDomain: first.example\n")
    token = core.create_namespaced_service_account_token("galley", NAMESPACE, {"spec": {}})
    kubeconfig = kube_cluster.token_kubeconfig(tmp_path / "galley.kubeconfig", token.status.token)
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    started: list[ChildProcess] = []
    try:
        nats.start()
        monitoring, pilot_http, pilot_debug = free_port(), free_port(), free_port()
        galley = ChildProcess(
            ["env", f"KUBECONFIG={kubeconfig}", f"POD_NAMESPACE={NAMESPACE}", str(BIN / "meshplane-galley"),
             "--nats-url", nats.url, "--webhook-addr", f"127.0.0.1:{free_port()}",
             "--monitoring-addr", f"127.0.0.1:{monitoring}", "--debug-addr", f"127.0.0.1:{free_port()}"],
            tmp_path / "galley.log", die_with_parent=True, name="galley",
        )  # fmt: skip
        pilot = ChildProcess(
            [str(BIN / "meshplane-pilot"), "--nats-url", nats.url, "--grpc-addr", f"127.0.0.1:{free_port()}",
             "--http-addr", f"127.0.0.1:{pilot_http}", "--debug-addr", f"127.0.0.1:{pilot_debug}",
             "--id", "pilot-meshconfig", "--xds-plaintext"],
            tmp_path / "pilot.log", die_with_parent=True, name="pilot",
        )  # fmt: skip
        for process in (galley, pilot):
            process.start()
            started.append(process)

        def trust_domain() -> str:
            return str(get_json(f"http://127.0.0.1:{pilot_debug}/debug/mesh")["trustDomain"])

        wait_until(
            lambda: trust_domain() == "first.example", "Pilot on the ConfigMap's trust domain", 60, started
        )
        core.replace_namespaced_config_map("istio", NAMESPACE, configmap("trustDomain: second.example\n"))
        wait_until(
            lambda: trust_domain() == "second.example", "Pilot on the edited trust domain", 30, started
        )

        core.replace_namespaced_config_map("istio", NAMESPACE, configmap("trustDomain: Not A Domain!\n"))
        refusal = (
            "ConfigMap meshplane-system/istio data.mesh: trustDomain: expected a domain such as "
            "cluster.local, got 'Not A Domain!'; keeping the last valid MeshConfig"
        )
        wait_until(
            lambda: refusal in galley.log_text(), "Galley refusing the edit, naming the field", 30, started
        )
        assert trust_domain() == "second.example"
        no_key = {"metadata": {"name": "istio", "namespace": NAMESPACE}, "data": {"meshNetworks": "{}"}}
        core.replace_namespaced_config_map("istio", NAMESPACE, no_key)
        missing = "ConfigMap meshplane-system/istio: no key mesh (the MeshConfig YAML) in data"
        wait_until(lambda: missing in galley.log_text(), "the refusal of no mesh key", 30, started)
        assert trust_domain() == "second.example"

        core.delete_namespaced_config_map("istio", NAMESPACE)
        wait_until(
            lambda: trust_domain() == "cluster.local", "Istio's default once it is deleted", 30, started
        )
        assert all(p.running for p in started)
        assert "fields not applied" not in galley.log_text()
    finally:
        for process in reversed(started):
            process.stop(timeout=15)
        nats.stop()
