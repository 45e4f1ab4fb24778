"""Galley's validating webhook, called by the real API server (issue 13 item 4).

``k8s/``'s ValidatingWebhookConfiguration (rules for the Istio groups, ``failurePolicy: Ignore``)
is registered with its ``service:`` reference swapped for ``url: https://127.0.0.1:<port>/validate``
and a ``caBundle``, as envtest registers webhooks, and a ``namespaceSelector`` so that it judges
only this module's namespace. ``meshplane-galley`` runs as a real process (directory mode, an
empty directory) with ``--tls-cert/--tls-key`` for a certificate with an IP SAN for 127.0.0.1.
"""

from __future__ import annotations

import base64
import copy
import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.processes import ChildProcess
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"
WEBHOOK_CONFIG = "meshplane-validator-meshplane-system"
DENIED = 'admission webhook "validation.meshplane.io" denied the request: '


def virtual_service(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": spec,
    }


VALID = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}


class Galley:
    """``meshplane-galley`` on a fixed pair of free ports, so the webhook url survives a restart."""

    def __init__(self, nats_url: str, directory: Path, kubeconfig: Path | None = None) -> None:
        """Directory mode (an empty directory), or Kubernetes mode as the ``kubeconfig``'s user."""
        self.cert, self.key = write_self_signed(directory / "tls", "galley.meshplane-system.svc")
        self.webhook_port, self.monitoring_port = free_port(), free_port()
        if kubeconfig is None:
            (directory / "config").mkdir()
            source = ["--config-dir", str(directory / "config")]
        else:  # the kubernetes client reads $KUBECONFIG
            source = ["--webhook-config-name", WEBHOOK_CONFIG]
        command = [
            *(["env", f"KUBECONFIG={kubeconfig}"] if kubeconfig else []),
            str(Path(sys.executable).parent / "meshplane-galley"),
            *("--nats-url", nats_url, *source),
            *("--webhook-addr", f"127.0.0.1:{self.webhook_port}"),
            *("--monitoring-addr", f"127.0.0.1:{self.monitoring_port}", "--debug-addr", "127.0.0.1:0"),
            *("--tls-cert", str(self.cert), "--tls-key", str(self.key)),
        ]
        self.process = ChildProcess(command, directory / "galley.log", die_with_parent=True, name="galley")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}/validate"

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, "galley ready (its /readyz answers 200)", timeout=60, procs=[self.process])

    def _ready(self) -> bool:
        readyz = f"http://127.0.0.1:{self.monitoring_port}/readyz"
        with urllib.request.urlopen(readyz, timeout=2) as resp:  # noqa: S310 (a loopback http url)
            return bool(resp.status == 200)

    def stop(self) -> None:
        self.process.stop(timeout=15)


@pytest.fixture(scope="module")
def galley(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Galley]:
    """Galley and its own nats-server, for this module."""
    directory = tmp_path_factory.mktemp("galley")
    nats = NatsServer(store_dir=directory / "nats", log_file=directory / "nats.log")
    nats.start()
    running = Galley(nats.url, directory)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        nats.stop()


@pytest.fixture(scope="module")
def webhook_namespace(kube_api: Any) -> Iterator[str]:
    core: Any = client.CoreV1Api(kube_api)
    name = f"wh-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def webhook_config(
    kube_api: Any, k8s_base: list[dict[str, Any]], galley: Galley, webhook_namespace: str, crds: None
) -> Iterator[str]:
    """k8s/'s configuration registered by url + caBundle for ``webhook_namespace`` only; its name."""
    config = url_variant(k8s_base, galley.url)
    assert all(w["failurePolicy"] == "Ignore" for w in config["webhooks"])  # as installed
    name = config["metadata"]["name"] = f"meshplane-validator-{webhook_namespace}"
    for webhook in config["webhooks"]:
        webhook["clientConfig"]["caBundle"] = base64.b64encode(galley.cert.read_bytes()).decode()
        webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": webhook_namespace}}
    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    admission.create_validating_webhook_configuration(config)
    custom: Any = client.CustomObjectsApi(kube_api)

    def judged() -> bool:  # the API server's webhook informer has the configuration
        return refusal(custom, webhook_namespace, virtual_service("probe", {"hosts": []})) is not None

    wait_until(judged, "the API server to call galley's webhook")
    try:
        yield name
    finally:
        admission.delete_validating_webhook_configuration(name)


def refusal(custom: Any, namespace: str, obj: dict[str, Any], dry_run: bool = True) -> str | None:
    """The API server's message if it refuses to create ``obj``; None if it accepts it."""
    extra = {"dry_run": "All"} if dry_run else {}
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj, **extra)
    except client.exceptions.ApiException as err:
        body = json.loads(str(err.body))
        assert err.status == body["code"], body
        return f"{err.status} {body['message']}"
    return None


def test_an_invalid_virtual_service_is_refused_with_galleys_message_naming_the_field(
    kube_api: Any, webhook_config: str, webhook_namespace: str
) -> None:
    custom: Any = client.CustomObjectsApi(kube_api)
    route = {"destination": {"host": "reviews", "port": {"number": 0}}}
    spec = {"hosts": ["reviews"], "http": [{"route": [route]}]}
    message = refusal(custom, webhook_namespace, virtual_service("bad-port", spec), dry_run=False)
    assert message == (
        "400 " + DENIED + "configuration is invalid: "
        "spec.http[0].route[0].destination.port.number: port number 0 must be in the range 1..65535"
    )
    with pytest.raises(client.exceptions.ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL, "bad-port")
    assert missing.value.status == 404


def test_a_valid_virtual_service_is_stored_an_invalid_update_refused_and_delete_allowed(
    kube_api: Any, webhook_config: str, webhook_namespace: str
) -> None:
    custom: Any = client.CustomObjectsApi(kube_api)
    assert refusal(custom, webhook_namespace, virtual_service("reviews", VALID), dry_run=False) is None
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL, "reviews")
    assert stored["spec"] == VALID

    broken = {"spec": {"http": [{"retries": {"attempts": -1}, "route": [{"destination": {"host": "r"}}]}]}}
    with pytest.raises(client.exceptions.ApiException) as refused:
        custom.patch_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL, "reviews", broken)
    assert refused.value.status == 400
    assert json.loads(str(refused.value.body))["message"] == (
        DENIED + "configuration is invalid: spec.http[0].retries.attempts: attempts cannot be negative"
    )
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL, "reviews")
    assert stored["spec"] == VALID

    custom.delete_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL, "reviews")
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, webhook_namespace, PLURAL)["items"]
    assert listed == []


def test_a_malformed_object_is_refused_with_galleys_message_never_a_webhook_error(
    kube_api: Any, webhook_config: str, webhook_namespace: str
) -> None:
    """Values of the right JSON type that Galley cannot parse: the answer is Galley's 400, naming
    the field, not the API server's "failed calling webhook" (what a webhook 5xx would give)."""
    custom: Any = client.CustomObjectsApi(kube_api)
    cases: dict[str, dict[str, Any]] = {
        "spec.http[0].timeout: invalid duration 'soon'": {"timeout": "soon"},
        "spec.http[0].match[0].uri.regex: '(' is not a valid RE2 regex": {"match": [{"uri": {"regex": "("}}]},
    }
    for expected, rule in cases.items():
        spec = {"hosts": ["reviews"], "http": [{**rule, "route": [{"destination": {"host": "r"}}]}]}
        message = refusal(custom, webhook_namespace, virtual_service("malformed", spec))
        assert message is not None
        assert message.startswith("400 " + DENIED + "configuration is invalid: " + expected), message
        assert "failed calling webhook" not in message


def test_failure_policy_ignore_admits_while_galley_is_down_and_fail_refuses(
    kube_api: Any, webhook_config: str, webhook_namespace: str, galley: Galley
) -> None:
    custom: Any = client.CustomObjectsApi(kube_api)
    admission: Any = client.AdmissionregistrationV1Api(kube_api)

    def set_policy(policy: str) -> None:
        ops = [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": policy}]
        admission.patch_validating_webhook_configuration(webhook_config, ops)

    invalid = virtual_service("while-down", {"hosts": []})
    galley.stop()
    try:
        # Ignore (as installed): with nothing listening, even an invalid object is admitted.
        wait_until(lambda: refusal(custom, webhook_namespace, invalid) is None, "Ignore to admit")
        set_policy("Fail")
        wait_until(lambda: refusal(custom, webhook_namespace, invalid) is not None, "Fail to refuse")
        message = refusal(custom, webhook_namespace, virtual_service("valid-while-down", VALID))
        assert message is not None
        assert 'failed calling webhook "validation.meshplane.io"' in message
        assert galley.url in message
    finally:
        galley.start()
    # Galley back: the valid object is admitted again, the invalid one refused by Galley itself.
    assert refusal(custom, webhook_namespace, virtual_service("valid-again", VALID)) is None
    message = refusal(custom, webhook_namespace, invalid)
    assert message is not None and message.startswith("400 " + DENIED)
    set_policy("Ignore")


def url_variant(k8s_base: list[dict[str, Any]], url: str) -> dict[str, Any]:
    """k8s/'s ValidatingWebhookConfiguration with each ``service:`` reference replaced by ``url``."""
    (config,) = copy.deepcopy([o for o in k8s_base if o["kind"] == "ValidatingWebhookConfiguration"])
    for webhook in config["webhooks"]:
        assert webhook["clientConfig"]["service"]["path"] == "/validate"
        webhook["clientConfig"] = {"url": url}
    return config


def test_galley_in_kubernetes_mode_publishes_the_ca_and_switches_ignore_to_fail_as_istiod_does(
    kube_api: Any,
    kube_cluster: KubeCluster,
    k8s_base: list[dict[str, Any]],
    applied_rbac: list[dict[str, Any]],
    crds: None,
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    """Installed as k8s/ installs it (Ignore, no caBundle), Galley running as its own ServiceAccount
    (a TokenRequest token, k8s/'s RBAC) fills in caBundle, proves its webhook denies an
    always-rejected Gateway (a dry run), and only then sets failurePolicy Fail."""
    core: Any = client.CoreV1Api(kube_api)
    token = core.create_namespaced_service_account_token("galley", "meshplane-system", {"spec": {}})
    kubeconfig = kube_cluster.token_kubeconfig(tmp_path / "galley.kubeconfig", token.status.token)
    nats = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    galley = Galley(nats.url, tmp_path, kubeconfig)
    config = url_variant(k8s_base, galley.url)
    assert [w["failurePolicy"] for w in config["webhooks"]] == ["Ignore"]
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    admission: Any = client.AdmissionregistrationV1Api(kube_api)
    admission.create_validating_webhook_configuration(config)
    custom: Any = client.CustomObjectsApi(kube_api)
    try:
        galley.start()
        ca_bundle = base64.b64encode(galley.cert.read_bytes()).decode()

        def switched() -> bool:
            (webhook,) = admission.read_validating_webhook_configuration(WEBHOOK_CONFIG).webhooks
            return bool(webhook.failure_policy == "Fail" and webhook.client_config.ca_bundle == ca_bundle)

        wait_until(switched, "galley to publish its CA and switch failurePolicy to Fail", timeout=60)
        # The proof was a dry run: no Gateway was stored.
        assert custom.list_namespaced_custom_object(GROUP, VERSION, "default", "gateways")["items"] == []
        message = refusal(custom, kube_namespace, virtual_service("no-http", {"hosts": ["a"]}))
        assert message == "400 " + DENIED + (
            "configuration is invalid: spec: http, tcp or tls must be provided in virtual service"
        )
        galley.stop()
        message = refusal(custom, kube_namespace, virtual_service("valid-while-down", VALID))
        assert message is not None and 'failed calling webhook "validation.meshplane.io"' in message
    finally:
        galley.stop()
        nats.stop()
        admission.delete_validating_webhook_configuration(WEBHOOK_CONFIG)
