"""Smoke tests against the real kube-apiserver and kube-controller-manager (issue 13, first steps).

One API server per session (``kube_cluster``); each test works in its own namespace. The tests
skip where Go is absent and the binaries were never built (see ``tests/kube/build.sh``).
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes import client, config, dynamic

from meshplane.shared.testing import kubeenv
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until
from meshplane.shared.testing.kubefixtures import require_kube_binaries
from meshplane.shared.testing.kubelet import TestKubelet

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

FIELD_MANAGER = "meshplane-tests"


def _render_script() -> ModuleType:
    """k8s/render.py (a script, not an installed module), which renders a kustomization."""
    spec = importlib.util.spec_from_file_location("meshplane_k8s_render_kube", REPO / "k8s" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Applied with dryRun=All only: its `service:` reference would make the API server dial the
#: galley Service's ClusterIP, which nothing serves and nothing here may dial.
DRY_RUN_KINDS = {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}


def apply(dyn: dynamic.DynamicClient, obj: dict[str, Any], dry_run: bool = False) -> Any:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    extra = {"dry_run": "All"} if dry_run else {}
    return resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        **extra,
    )


@pytest.fixture(scope="module")
def dev_overlay() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = _render_script().render(REPO / "k8s" / "overlays" / "dev")
    return objects


@pytest.fixture(scope="module")
def installed_crds(kube_api: Any, dev_overlay: list[dict[str, Any]]) -> dynamic.DynamicClient:
    """The dev overlay's Namespace and CRDs applied server-side and Established; a dynamic client."""
    crds = [o for o in dev_overlay if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) >= 10
    dyn = dynamic.DynamicClient(kube_api)  # type: ignore[no-untyped-call]
    for obj in (o for o in dev_overlay if o["kind"] in ("Namespace", "CustomResourceDefinition")):
        apply(dyn, obj)

    extensions: Any = client.ApiextensionsV1Api(kube_api)

    def all_established() -> bool:
        for crd in crds:
            conditions = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions
            if not any(c.type == "Established" and c.status == "True" for c in conditions or []):
                return False
        return True

    wait_until(all_established, f"all {len(crds)} CRDs Established")
    dyn.resources.invalidate_cache()  # discovery now serves the new groups
    return dyn


def test_crds_and_the_dev_overlay_apply_server_side_and_the_crds_become_established(
    kube_api: Any, installed_crds: dynamic.DynamicClient, dev_overlay: list[dict[str, Any]]
) -> None:
    dyn, objects = installed_crds, dev_overlay
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition"):
            apply(dyn, obj, dry_run=obj["kind"] in DRY_RUN_KINDS)
    apps: Any = client.AppsV1Api(kube_api)
    stored = apps.list_namespaced_deployment("meshplane-system").items
    assert {d.metadata.name for d in stored} >= {"galley", "pilot", "citadel"}
    managers = {m.manager for d in stored for m in d.metadata.managed_fields}
    assert FIELD_MANAGER in managers

    # The CRDs serve their kinds: an Istio object is stored and read back (no webhook is registered).
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "smoke", "namespace": "meshplane-system"},
        "spec": {"hosts": ["smoke.example.com"], "http": [{"route": [{"destination": {"host": "smoke"}}]}]},
    }
    apply(dyn, virtual_service)
    resource = dyn.resources.get(api_version="networking.istio.io/v1", kind="VirtualService")
    try:
        read = resource.get(name="smoke", namespace="meshplane-system")
        assert read.spec.hosts == ["smoke.example.com"]
    finally:
        resource.delete(name="smoke", namespace="meshplane-system")


def test_a_deployment_gets_running_ready_pods_and_endpoint_slices(kube_api: Any, kube_namespace: str) -> None:
    apps: Any = client.AppsV1Api(kube_api)
    core: Any = client.CoreV1Api(kube_api)
    discovery: Any = client.DiscoveryV1Api(kube_api)
    labels = {"app": "echo"}
    container = {
        "name": "echo",
        "image": "example.invalid/echo:1",
        "ports": [{"name": "http", "containerPort": 8080}],
    }
    apps.create_namespaced_deployment(
        kube_namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    core.create_namespaced_service(
        kube_namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    )
    with TestKubelet(kube_api, {kube_namespace}) as kubelet:

        def deployment_ready() -> bool:
            status = apps.read_namespaced_deployment_status("echo", kube_namespace).status
            return bool(status.ready_replicas == 2 and status.available_replicas == 2)

        wait_until(deployment_ready, "Deployment echo with 2 ready replicas", timeout=60)
        assert kubelet.errors == 0

        (replica_set,) = apps.list_namespaced_replica_set(kube_namespace).items
        assert replica_set.metadata.owner_references[0].name == "echo"
        pods: list[Any] = core.list_namespaced_pod(kube_namespace).items
        assert len(pods) == 2
        for pod in pods:
            assert pod.metadata.owner_references[0].name == replica_set.metadata.name
            assert pod.spec.node_name == kubelet.node_name
            assert pod.status.phase == "Running"
            assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network("198.51.100.0/24")
            assert {c.type for c in pod.status.conditions if c.status == "True"} >= {
                "Ready",
                "ContainersReady",
            }
            # ServiceAccount admission ran: the default account and its projected token volume.
            assert pod.spec.service_account_name == "default"
            assert any(v.projected and v.name.startswith("kube-api-access-") for v in pod.spec.volumes)
        pod_ips = {p.status.pod_ip for p in pods}

        def slice_addresses() -> set[str]:
            slices = discovery.list_namespaced_endpoint_slice(
                kube_namespace, label_selector="kubernetes.io/service-name=echo"
            ).items
            return {
                address
                for s in slices
                for e in s.endpoints or []
                if e.conditions.ready
                for address in e.addresses
            }

        wait_until(
            lambda: slice_addresses() == pod_ips, "the EndpointSlice of Service echo to list both pods"
        )

        # Scaling down: the ReplicaSet deletes a pod gracefully, the kubelet finishes the delete,
        # and the slice follows.
        apps.patch_namespaced_deployment_scale("echo", kube_namespace, {"spec": {"replicas": 1}})

        def remaining() -> set[str]:
            return {p.status.pod_ip for p in core.list_namespaced_pod(kube_namespace).items}

        wait_until(lambda: len(remaining()) == 1, "one pod left after scaling to 1")
        wait_until(lambda: slice_addresses() == remaining(), "the EndpointSlice to drop the deleted pod")
        assert kubelet.errors == 0


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_token_request_issues_an_istio_ca_token_that_token_review_accepts(
    kube_api: Any, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(kube_namespace, {"metadata": {"name": "workload"}})
    request = {"spec": {"audiences": ["istio-ca"], "expirationSeconds": 600}}
    token = core.create_namespaced_service_account_token("workload", kube_namespace, request).status.token

    claims = _jwt_claims(token)
    assert claims["aud"] == ["istio-ca"]
    assert claims["iss"] == kube_cluster.issuer
    assert claims["sub"] == f"system:serviceaccount:{kube_namespace}:workload"
    assert claims["exp"] - claims["iat"] == 600

    authentication: Any = client.AuthenticationV1Api(kube_api)
    review = authentication.create_token_review({"spec": {"token": token, "audiences": ["istio-ca"]}}).status
    assert review.authenticated is True
    assert review.user.username == f"system:serviceaccount:{kube_namespace}:workload"
    assert review.audiences == ["istio-ca"]
    other = authentication.create_token_review({"spec": {"token": token, "audiences": ["other"]}}).status
    assert not other.authenticated


def kubeenv_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "meshplane.shared.testing.kubeenv", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_kube_up_writes_a_working_kubeconfig_and_kube_down_stops_every_process(tmp_path: Path) -> None:
    """What `make kube-up` / `make kube-down` run (a second, short-lived control plane)."""
    require_kube_binaries()
    state = tmp_path / "kube"
    up = kubeenv_cli("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    try:
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
        record = json.loads((state / "cluster.json").read_text())
        assert [p["name"] for p in record["processes"]] == list(kubeenv.BINARIES)
        assert all(kubeenv.is_running(p["pid"], p["binary"]) for p in record["processes"])

        api = config.new_client_from_config(config_file=str(state / "kubeconfig"))  # type: ignore[no-untyped-call]
        with api:
            core: Any = client.CoreV1Api(api)
            namespaces = {n.metadata.name for n in core.list_namespace().items}
        assert {"default", "kube-system"} <= namespaces

        again = kubeenv_cli("up", "--state-dir", str(state))
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = kubeenv_cli("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
    stopped = down.stdout  # the controller manager first, etcd last
    assert (
        stopped.index("kube-controller-manager (pid")
        < stopped.index("kube-apiserver (pid")
        < stopped.index("etcd (pid")
    )
    for entry in record["processes"]:
        assert not kubeenv.is_running(entry["pid"], entry["binary"]), entry
    assert not (state / "cluster.json").exists()
    assert "nothing running" in kubeenv_cli("down", "--state-dir", str(state)).stdout


def test_a_service_account_kubeconfig_is_held_to_its_rbac(
    kube_api: Any, kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    rbac: Any = client.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(kube_namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token("reader", kube_namespace, {"spec": {}}).status.token
    kubeconfig = kube_cluster.token_kubeconfig(tmp_path / "reader.kubeconfig", token)
    as_reader = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    reader: Any = client.CoreV1Api(as_reader)

    def status_of(call: Any) -> int:
        try:
            call()
        except client.exceptions.ApiException as err:
            return int(err.status)
        return 200

    def list_config_maps() -> int:
        return status_of(lambda: reader.list_namespaced_config_map(kube_namespace))

    with as_reader:
        assert list_config_maps() == 403
        rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
        rbac.create_namespaced_role(kube_namespace, {"metadata": {"name": "reader"}, "rules": [rule]})
        rbac.create_namespaced_role_binding(
            kube_namespace,
            {
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube_namespace}],
            },
        )
        wait_until(lambda: list_config_maps() == 200, "the RoleBinding to let the reader list ConfigMaps")
        assert status_of(lambda: reader.list_namespaced_secret(kube_namespace)) == 403
        assert status_of(lambda: reader.list_namespaced_config_map("default")) == 403


def test_every_example_is_accepted_by_the_crd_schemas(
    installed_crds: dynamic.DynamicClient, dev_overlay: list[dict[str, Any]], kube_namespace: str
) -> None:
    """Each Istio object in examples/ passes the API server's structural schema in a server-side
    apply dry run (server-side apply refuses any field the schema does not declare)."""
    served = {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
        for crd in dev_overlay
        if crd["kind"] == "CustomResourceDefinition"
        for version in crd["spec"]["versions"]
        if version["served"]
    }
    checked = 0
    for path in sorted((REPO / "examples").rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj or (obj.get("apiVersion"), obj.get("kind")) not in served:
                continue  # e.g. LocalWorkload, or a mesh.yaml: the local mesh's own files
            obj["metadata"]["namespace"] = kube_namespace
            resource = installed_crds.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=kube_namespace,
                field_manager=FIELD_MANAGER,
                dry_run="All",
            )
            checked += 1
    assert checked >= 20

    # A create with fieldValidation=Strict (kubectl's default) refuses an unknown field, naming it.
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "typo"},
        "spec": {"hosts": ["typo"], "htpp": []},
    }
    custom: Any = client.CustomObjectsApi(installed_crds.client)
    with pytest.raises(client.exceptions.ApiException) as refused:
        custom.create_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            kube_namespace,
            "virtualservices",
            virtual_service,
            dry_run="All",
            field_validation="Strict",
        )
    assert refused.value.status == 400
    assert 'unknown field "spec.htpp"' in json.loads(str(refused.value.body))["message"]


def test_the_kubelet_gives_a_pod_the_address_the_test_chooses(kube_api: Any, kube_namespace: str) -> None:
    """A test that runs a pod's process in its own network namespace hands the kubelet that address."""
    core: Any = client.CoreV1Api(kube_api)
    chosen = {"web": "203.0.113.7"}
    pod = {
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "example.invalid/web"}]},
    }
    core.create_namespaced_pod(kube_namespace, pod)
    with TestKubelet(kube_api, {kube_namespace}, address_for=lambda p: chosen[p["metadata"]["name"]]):

        def running() -> bool:
            status = core.read_namespaced_pod_status("web", kube_namespace).status
            return bool(status.phase == "Running" and status.pod_ip == "203.0.113.7")

        wait_until(running, "pod web Running at 203.0.113.7")
        pod_ips = [a.ip for a in core.read_namespaced_pod_status("web", kube_namespace).status.pod_ips]
        assert pod_ips == ["203.0.113.7"]
