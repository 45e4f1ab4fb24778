"""Sidecar injection through the real API server (issue 13 items 5 and 10c).

``k8s/``'s MutatingWebhookConfiguration (Istio's four sidecar-injector webhooks) is registered with
each ``service:`` reference swapped for ``url: https://127.0.0.1:<port>/inject`` and a
``caBundle``, and each namespaceSelector narrowed to this module's namespaces, so other tests'
pods never reach it. Galley runs as a real process (``tests/kube/test_webhook.py``'s ``Galley``).
Pods come from the real kube-controller-manager (Deployment -> ReplicaSet -> Pod), so the webhook
sees exactly what the API server sends for a controller-made pod (no name yet, an owner).
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

from .test_webhook import Galley

try:  # the CRDs fixture Kubernetes mode needs: in test_webhook.py until it moves to conftest.py
    from .test_webhook import crds  # noqa: F401
except ImportError:
    pass

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

MESHCTL = Path(sys.executable).parent / "meshctl"


def deployment(name: str, labels: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    pod_labels = {"app": name, "version": "v1", **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": {
                    "containers": [{"name": name, "image": f"{name}:1", "ports": [{"containerPort": 9080}]}]
                },
            },
        },
    }


@pytest.fixture(scope="module")
def namespaces(kube_api: Any) -> Iterator[dict[str, str]]:
    """Three namespaces: labelled ``istio-injection=enabled``, ``istio.io/rev=default``, neither."""
    core: Any = client.CoreV1Api(kube_api)
    suffix = uuid.uuid4().hex[:8]
    made = {
        "enabled": ({"istio-injection": "enabled"}, f"inj-on-{suffix}"),
        "rev": ({"istio.io/rev": "default"}, f"inj-rev-{suffix}"),
        "plain": ({}, f"inj-off-{suffix}"),
    }
    for labels, name in made.values():
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
    for _, name in made.values():

        def default_sa(ns: str = name) -> bool:
            return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items)

        wait_until(default_sa, f"ServiceAccount {name}/default")
    try:
        yield {key: name for key, (_, name) in made.items()}
    finally:
        for _, name in made.values():
            core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            core.delete_namespace(name)


def url_variant(k8s_base: list[dict[str, Any]], galley: Galley, namespaces: list[str]) -> dict[str, Any]:
    """k8s/'s injector configuration calling ``galley`` by url, for ``namespaces`` only."""
    (config,) = copy.deepcopy([o for o in k8s_base if o["kind"] == "MutatingWebhookConfiguration"])
    mine = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)}
    for webhook in config["webhooks"]:
        assert webhook["clientConfig"]["service"]["path"] == "/inject"
        webhook["clientConfig"] = {"url": galley.url.replace("/validate", "/inject")}
        webhook["namespaceSelector"]["matchExpressions"].append(mine)
    return config


@pytest.fixture(scope="module")
def injector(
    kube_api: Any,
    k8s_base: list[dict[str, Any]],
    namespaces: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Galley]:
    """Galley (its own nats-server) behind k8s/'s injector configuration, registered by url."""
    directory = tmp_path_factory.mktemp("injector")
    nats = NatsServer(store_dir=directory / "nats", log_file=directory / "nats.log")
    nats.start()
    galley = Galley(nats.url, directory)
    config = url_variant(k8s_base, galley, list(namespaces.values()))
    config["metadata"]["name"] = f"injector-{namespaces['plain']}"
    for webhook in config["webhooks"]:
        webhook["clientConfig"]["caBundle"] = base64.b64encode(galley.cert.read_bytes()).decode()
    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    admission.create_mutating_webhook_configuration(config)
    core: Any = client.CoreV1Api(kube_api)
    try:
        galley.start()
        probe = {"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "a", "image": "a"}]}}

        def injecting() -> bool:  # the API server's webhook informer has the configuration
            made = core.create_namespaced_pod(namespaces["enabled"], probe, dry_run="All")
            return any(c.name == "istio-proxy" for c in made.spec.containers)

        wait_until(injecting, "the API server to call galley's /inject")
        yield galley
    finally:
        admission.delete_mutating_webhook_configuration(config["metadata"]["name"])
        galley.stop()
        nats.stop()


def create_deployment(kube_api: Any, namespace: str, body: dict[str, Any]) -> Any:
    """Create ``body`` and return the pod the controllers make for it."""
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, body)
    core: Any = client.CoreV1Api(kube_api)
    selector = f"app={body['spec']['selector']['matchLabels']['app']}"

    found: list[Any] = []

    def made() -> bool:
        found[:] = core.list_namespaced_pod(namespace, label_selector=selector).items
        return bool(found)

    wait_until(made, f"the pod of Deployment {namespace}/{body['metadata']['name']}", timeout=60)
    return found[0]


def kube_inject(tmp_path: Path, body: dict[str, Any]) -> dict[str, Any]:
    """``meshctl kube-inject -f`` run as a user runs it."""
    source = tmp_path / f"{body['metadata']['name']}.yaml"
    source.write_text(yaml.safe_dump(body))
    done = subprocess.run(
        [str(MESHCTL), "kube-inject", "-f", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    injected: dict[str, Any] = yaml.safe_load(done.stdout)
    return injected


def sidecar_setup(kube_api: Any, pod: Any) -> dict[str, Any]:
    """The pod as the API server stored it, less what differs between any two pods of a namespace
    (names, uids, the API token volume the ServiceAccount plugin adds, the template hash)."""
    data: dict[str, Any] = kube_api.sanitize_for_serialization(pod)
    spec = data["spec"]
    for container in spec["containers"] + spec.get("initContainers", []):
        container["volumeMounts"] = [
            m for m in container.get("volumeMounts", []) if not m["name"].startswith("kube-api-access")
        ]
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kube-api-access")]
    labels = {k: v for k, v in data["metadata"]["labels"].items() if k != "pod-template-hash"}
    return {"spec": spec, "labels": labels, "annotations": data["metadata"]["annotations"]}


def test_a_pod_in_an_enabled_namespace_gets_what_kube_inject_gives_and_its_output_is_accepted(
    kube_api: Any, injector: Galley, namespaces: dict[str, str], tmp_path: Path
) -> None:
    """The same Deployment twice: created as it is in the ``istio-injection=enabled`` namespace
    (the webhook injects), and created from ``meshctl kube-inject -f`` output in the namespace
    without labels (the API server accepts it; no webhook is called). The pods are the same."""
    body = deployment("reviews")
    webhook_pod = create_deployment(kube_api, namespaces["enabled"], body)
    offline_pod = create_deployment(kube_api, namespaces["plain"], kube_inject(tmp_path, body))
    injected, offline = sidecar_setup(kube_api, webhook_pod), sidecar_setup(kube_api, offline_pod)
    assert [c["name"] for c in injected["spec"]["containers"]] == ["reviews", "istio-proxy"]
    assert [c["name"] for c in injected["spec"]["initContainers"]] == ["istio-validation"]
    for key in ("containers", "initContainers", "volumes"):
        assert injected["spec"][key] == offline["spec"][key], key
    assert injected["labels"] == offline["labels"]
    assert injected["annotations"] == offline["annotations"]
    proxy = injected["spec"]["containers"][1]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_WORKLOAD_NAME"] == "reviews"  # the Deployment, from the ReplicaSet owner


def test_selection_follows_istios_namespace_and_pod_labels(
    kube_api: Any, injector: Galley, namespaces: dict[str, str]
) -> None:
    core: Any = client.CoreV1Api(kube_api)

    def containers(namespace: str, labels: dict[str, str] | None = None, **annotations: str) -> list[str]:
        meta = {"generateName": "p-", "labels": labels or {}, "annotations": annotations}
        made = core.create_namespaced_pod(
            namespace, {"metadata": meta, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        )
        return [c.name for c in made.spec.containers]

    sidecar, plain = ["app", "istio-proxy"], ["app"]
    assert containers(namespaces["enabled"]) == sidecar
    assert containers(namespaces["rev"]) == sidecar
    assert containers(namespaces["plain"]) == plain  # a namespace without the label is untouched
    # the pod's own label opts in where the namespace has none, and opts out anywhere
    assert containers(namespaces["plain"], {"sidecar.istio.io/inject": "true"}) == sidecar
    assert containers(namespaces["plain"], {"istio.io/rev": "default"}) == sidecar
    assert containers(namespaces["enabled"], {"sidecar.istio.io/inject": "false"}) == plain
    # the legacy annotation reaches galley (the selectors only see labels), which honours "false"
    assert containers(namespaces["enabled"], **{"sidecar.istio.io/inject": "false"}) == plain


def test_an_injection_error_refuses_the_pod_with_galleys_reason(
    kube_api: Any, injector: Galley, namespaces: dict[str, str]
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    pod = {
        "metadata": {
            "name": "bad",
            "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "80,http"},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    with pytest.raises(client.exceptions.ApiException) as refused:
        core.create_namespaced_pod(namespaces["enabled"], pod)
    assert refused.value.status == 400
    assert yaml.safe_load(refused.value.body)["message"] == (
        'admission webhook "namespace.sidecar-injector.istio.io" denied the request: injection failed: '
        "annotation traffic.sidecar.istio.io/excludeInboundPorts='80,http' is invalid: "
        "'http' is not a port number 0..65535"
    )
    # the same pod where no webhook selects it is created as it is
    assert core.create_namespaced_pod(namespaces["plain"], pod).metadata.name == "bad"


def revision_answer(galley: Galley, revision: str) -> tuple[bool, str]:
    """Galley's answer to a pod review POSTed to ``/inject/rev/<revision>``."""
    pod = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "a", "image": "a"}]},
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "object": pod,
        },
    }
    context = ssl.create_default_context(cafile=str(galley.cert))
    context.check_hostname = False  # its certificate names the Service; the CA is still checked
    request = urllib.request.Request(  # noqa: S310 (https to this test's galley)
        f"https://127.0.0.1:{galley.webhook_port}/inject/rev/{revision}",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as resp:  # noqa: S310
        answer = json.loads(resp.read())["response"]
    return answer["allowed"], (answer.get("status") or {}).get("message", "")


def test_galley_in_kubernetes_mode_publishes_its_ca_on_the_injector_configuration(
    kube_api: Any,
    kube_cluster: KubeCluster,
    k8s_base: list[dict[str, Any]],
    applied_rbac: list[dict[str, Any]],
    crds: None,  # noqa: F811 (the fixture imported above)
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    """Installed as k8s/ installs it (no caBundle), Galley running as its own ServiceAccount with
    k8s/'s RBAC fills in caBundle on each of the four webhooks (istiod's cert patcher), after which
    a pod in an enabled namespace is injected through TLS verified with that CA."""
    core: Any = client.CoreV1Api(kube_api)
    token = core.create_namespaced_service_account_token("galley", "meshplane-system", {"spec": {}})
    kubeconfig = kube_cluster.token_kubeconfig(tmp_path / "galley.kubeconfig", token.status.token)
    core.patch_namespace(kube_namespace, {"metadata": {"labels": {"istio-injection": "enabled"}}})
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    galley = Galley(nats.url, tmp_path, kubeconfig)
    config = url_variant(k8s_base, galley, [kube_namespace])
    name = config["metadata"]["name"]
    assert name == "meshplane-sidecar-injector"  # the one name galley's RBAC lets it patch
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    admission.create_mutating_webhook_configuration(config)
    try:
        galley.start()
        ca_bundle = base64.b64encode(galley.cert.read_bytes()).decode()

        def published() -> bool:
            webhooks = admission.read_mutating_webhook_configuration(name).webhooks
            return all(w.client_config.ca_bundle == ca_bundle for w in webhooks)

        wait_until(published, "galley to publish its CA on the injector's webhooks", timeout=60)
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}

        def injected() -> bool:  # the API server's webhook informer may lag behind the patch
            try:
                made = core.create_namespaced_pod(kube_namespace, pod, dry_run="All")
            except client.exceptions.ApiException as err:
                assert "failed calling webhook" in str(err.body), err.body
                return False
            return [c.name for c in made.spec.containers] == ["app", "istio-proxy"]

        wait_until(injected, "a pod injected through the published CA")
        webhooks = admission.read_mutating_webhook_configuration(name).webhooks
        assert {w.failure_policy for w in webhooks} == {"Fail"}  # as installed, untouched
        # a revision's path: refused until the cluster has that revision's injector
        assert revision_answer(galley, "canary") == (
            False,
            "injection failed: revision 'canary' is not installed (no sidecar injector configuration for it)",
        )
        canary = copy.deepcopy(config)
        canary["metadata"] = {
            "name": f"canary-{kube_namespace}",
            "labels": {"app": "sidecar-injector", "istio.io/rev": "canary"},
        }
        canary["webhooks"] = []  # only its labels matter to galley
        admission.create_mutating_webhook_configuration(canary)
        try:
            assert revision_answer(galley, "canary") == (True, "")
        finally:
            admission.delete_mutating_webhook_configuration(canary["metadata"]["name"])
    finally:
        admission.delete_mutating_webhook_configuration(name)
        galley.stop()
        nats.stop()
