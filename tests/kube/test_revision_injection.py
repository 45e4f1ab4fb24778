"""Switching a namespace between revisions through the real API server (issue 18, "Switching a
namespace"): the default's and the canary's injectors as ``meshctl manifest generate`` renders
them (``--revision canary`` for the second), and a tag made by ``meshctl tag``'s own code, each
registered with its path kept but ``url: https://127.0.0.1:<port><path>`` in place of the Service
and narrowed to this module's namespace. One Galley, a real process, answers them all.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from meshplane.ctl.install.tags import Injectors, tag_config
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.kubeenv import wait_until

from .test_install import rendered
from .test_webhook import Galley

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]


def registered(config: dict[str, Any], galley: Galley, namespace: str, name: str) -> dict[str, Any]:
    """``config`` calling ``galley`` by url at each webhook's own path, for ``namespace`` only."""
    config["metadata"] = {"name": name, "labels": config["metadata"].get("labels", {})}
    only = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}
    base = f"https://127.0.0.1:{galley.webhook_port}"
    for webhook in config["webhooks"]:
        path = webhook["clientConfig"].get("service", {}).get("path") or webhook["clientConfig"]["url"]
        path = path.removeprefix(base)
        webhook["clientConfig"] = {
            "url": base + path,
            "caBundle": base64.b64encode(galley.cert.read_bytes()).decode(),
        }
        webhook["namespaceSelector"].setdefault("matchExpressions", []).append(only)
    return config


@pytest.fixture(scope="module")
def namespace(kube_api: Any) -> Iterator[str]:
    core: Any = client.CoreV1Api(kube_api)
    name = f"rev-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"istio.io/rev": "canary"}}})
    wait_until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        f"ServiceAccount {name}/default",
    )
    try:
        yield name
    finally:
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def injectors(kube_api: Any, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Galley (its own nats-server) behind the default's, the canary's and tag ``prod``'s injectors."""
    directory = tmp_path_factory.mktemp("revision-injection")
    nats = NatsServer(store_dir=directory / "nats", log_file=directory / "nats.log")
    nats.start()
    galley = Galley(nats.url, directory)
    (default,) = [o for o in rendered() if o["kind"] == "MutatingWebhookConfiguration"]
    (canary,) = [o for o in rendered("--revision", "canary") if o["kind"] == "MutatingWebhookConfiguration"]
    configs = [
        registered(default, galley, namespace, f"default-{namespace}"),
        registered(canary, galley, namespace, f"canary-{namespace}"),
    ]
    prod = tag_config(Injectors.of(configs), "prod", "canary", overwrite=False)
    configs.append(registered(prod, galley, namespace, f"prod-{namespace}"))
    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    core: Any = client.CoreV1Api(kube_api)
    try:
        galley.start()
        for config in configs:
            admission.create_mutating_webhook_configuration(config)
        probe = {"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "a", "image": "a"}]}}

        def injecting() -> bool:  # the API server's webhook informer has the configurations
            made = core.create_namespaced_pod(namespace, probe, dry_run="All")
            return any(c.name == "istio-proxy" for c in made.spec.containers)

        wait_until(injecting, "the API server to call galley's /inject/rev/canary")
        yield
    finally:
        for config in configs:
            admission.delete_mutating_webhook_configuration(config["metadata"]["name"])
        galley.stop()
        nats.stop()


def injected_pod(kube_api: Any, namespace: str, labels: dict[str, str]) -> tuple[str, str]:
    """Relabel ``namespace``, create a pod (as a restarted one would be); its proxy's Pilot address
    and its ``istio.io/rev`` annotation.

    The API server matches a webhook's namespaceSelector against its own informer's copy of the
    namespace, which may lag the patch by a moment (a user restarts pods seconds later). So a
    relabel is followed by dry-run pods until their revision is no longer the one before it: every
    relabel in this module moves the namespace to another revision.
    """
    core: Any = client.CoreV1Api(kube_api)
    pod = {"metadata": {"generateName": "app-"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}

    def revision(made: Any) -> str | None:
        return (made.metadata.annotations or {}).get("istio.io/rev")

    current = core.read_namespace(namespace).metadata.labels or {}
    patch = {k: None for k in ("istio.io/rev", "istio-injection") if k in current} | labels
    if any(current.get(k) != v for k, v in patch.items()):
        before = revision(core.create_namespaced_pod(namespace, pod, dry_run="All"))
        core.patch_namespace(namespace, {"metadata": {"labels": patch}})
        wait_until(
            lambda: revision(core.create_namespaced_pod(namespace, pod, dry_run="All")) != before,
            f"the API server to see namespace {namespace} relabelled {labels}",
        )
    made = core.create_namespaced_pod(namespace, pod)
    proxy = next(c for c in made.spec.containers if c.name == "istio-proxy")
    script = proxy.command[-1]
    pilot = script.split("--pilot ", 1)[1].split(" ", 1)[0]
    return pilot, made.metadata.annotations["istio.io/rev"]


def test_a_namespace_moves_to_the_canary_and_back(kube_api: Any, namespace: str, injectors: None) -> None:
    pilot, revision = injected_pod(kube_api, namespace, {"istio.io/rev": "canary"})
    assert pilot.startswith("pilot-canary.meshplane-system.svc:") and revision == "canary"
    pilot, revision = injected_pod(kube_api, namespace, {"istio.io/rev": "default"})
    assert pilot.startswith("pilot.meshplane-system.svc:") and revision == "default"
    # labelled with a tag: the tag's revision, the label stays the tag's
    pilot, revision = injected_pod(kube_api, namespace, {"istio.io/rev": "prod"})
    assert pilot.startswith("pilot-canary.meshplane-system.svc:") and revision == "canary"
    # istio-injection=enabled wins over istio.io/rev and is the default revision's
    pilot, revision = injected_pod(
        kube_api, namespace, {"istio-injection": "enabled", "istio.io/rev": "canary"}
    )
    assert pilot.startswith("pilot.meshplane-system.svc:") and revision == "default"
