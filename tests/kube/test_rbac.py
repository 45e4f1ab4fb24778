"""RBAC least privilege, asked of the real API server (issue 13 item 8).

``k8s/``'s base and ``k8s/gateway`` ServiceAccounts, (Cluster)Roles and bindings are applied, then a
SubjectAccessReview per row asks the RBAC authorizer whether that component's ServiceAccount may
do one thing. ``tests/deploy/test_rbac.py`` checks the same manifests statically; this proves
what the API server actually grants (aggregated and default roles included).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from kubernetes import client, config

from meshplane.citadel.kube import sync_root_configmaps
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

NAMESPACE = "meshplane-system"
#: the ingress gateway (k8s/gateway) lives apart, where its credentialName Secrets are
GATEWAY = "istio-ingressgateway"
GATEWAY_NAMESPACE = "istio-ingress"
WEBHOOK_CONFIG = "meshplane-validator-meshplane-system"
INJECTOR_CONFIG = "meshplane-sidecar-injector"
ROOT_CONFIGMAP = "istio-ca-root-cert"


class Ask(NamedTuple):
    """One request attribute set: ``verb group/resource[/subresource]`` in ``namespace`` ('' = all)."""

    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace or 'all namespaces'}"
        named = f" named {self.name}" if self.name else ""
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource}{sub}{named}{where}"


ISTIO_KINDS = [
    ("networking.istio.io", "virtualservices"),
    ("networking.istio.io", "gateways"),
    ("security.istio.io", "authorizationpolicies"),
    ("telemetry.istio.io", "telemetries"),
    ("extensions.istio.io", "wasmplugins"),
]
#: What Galley's Kubernetes source lists and watches, cluster-wide.
GALLEY_READS = [
    *ISTIO_KINDS,
    ("", "services"),
    ("", "pods"),
    ("", "namespaces"),
    ("discovery.k8s.io", "endpointslices"),
]

#: Anything no component may do: read Secrets anywhere, mint tokens, exec into pods, escalate.
NOBODY = [
    Ask("list", "", "secrets"),
    Ask("get", "", "secrets", "default", "any"),
    Ask("watch", "", "secrets", NAMESPACE),
    Ask("create", "", "serviceaccounts", "default", "default", "token"),
    Ask("create", "", "pods", "default", "any", "exec"),
    Ask("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    Ask("escalate", "rbac.authorization.k8s.io", "clusterroles"),
    Ask("impersonate", "", "serviceaccounts", NAMESPACE, "galley"),
    Ask("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
]

ALLOWED: dict[str, list[Ask]] = {
    "galley": [
        *(Ask(verb, g, r) for g, r in GALLEY_READS for verb in ("list", "watch")),
        # The proof that the webhook works: a dry-run create of an always-rejected Gateway.
        Ask("create", "networking.istio.io", "gateways", "default"),
        Ask("get", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", WEBHOOK_CONFIG),
        Ask("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", WEBHOOK_CONFIG),
        # the injector's caBundle (istiod's webhook cert patcher)
        Ask("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", INJECTOR_CONFIG),
        # which revisions have an injector (POST /inject/rev/<rev>)
        Ask("list", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        # the MeshConfig: the istio ConfigMap of its namespace, by name
        *(Ask(verb, "", "configmaps", NAMESPACE, "istio") for verb in ("get", "list", "watch")),
    ],
    "pilot": [],
    "citadel": [
        Ask("create", "authentication.k8s.io", "tokenreviews"),
        Ask("list", "", "namespaces"),
        Ask("watch", "", "namespaces"),
        # RBAC cannot scope `create` by name (the name is not known when it is authorized).
        Ask("create", "", "configmaps", "default"),
        Ask("get", "", "configmaps", "default", ROOT_CONFIGMAP),
        Ask("update", "", "configmaps", "some-app", ROOT_CONFIGMAP),
        # its self-signed root, kept in Istio's Secret in its own namespace
        Ask("get", "", "secrets", NAMESPACE, "istio-ca-secret"),
        Ask("update", "", "secrets", NAMESPACE, "istio-ca-secret"),
        Ask("create", "", "secrets", NAMESPACE),
    ],
    "node-agent": [],
    "cni-agent": [Ask(verb, "", "pods") for verb in ("get", "list", "watch")],
    # its node agent watches each credentialName Secret by name, in its own namespace
    GATEWAY: [
        Ask("watch", "", "secrets", GATEWAY_NAMESPACE),
        Ask("list", "", "secrets", GATEWAY_NAMESPACE),
        Ask("get", "", "secrets", GATEWAY_NAMESPACE, "any-credential"),
    ],
}

REFUSED: dict[str, list[Ask]] = {
    "galley": [
        Ask("create", "networking.istio.io", "virtualservices", "default"),
        Ask("update", "networking.istio.io", "gateways", "default", "any"),
        Ask("delete", "networking.istio.io", "gateways", "default", "any"),
        Ask("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "someone-else"),
        Ask("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "someone-else"),
        Ask("delete", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", INJECTOR_CONFIG),
        Ask("delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", WEBHOOK_CONFIG),
        Ask("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        Ask("list", "", "configmaps"),
        Ask("list", "", "configmaps", NAMESPACE),
        Ask("get", "", "configmaps", NAMESPACE, "istio-ca-root-cert"),
        Ask("get", "", "configmaps", "default", "istio"),
        Ask("update", "", "configmaps", NAMESPACE, "istio"),
        Ask("create", "", "pods", "default"),
        Ask("update", "", "services", "default", "any"),
        Ask("create", "authentication.k8s.io", "tokenreviews"),
    ],
    # Pilot reads only the bus: no Kubernetes access at all.
    "pilot": [
        *(Ask("list", g, r) for g, r in GALLEY_READS),
        Ask("get", "", "configmaps", "default", ROOT_CONFIGMAP),
        Ask("create", "authentication.k8s.io", "tokenreviews"),
    ],
    "citadel": [
        Ask("update", "", "configmaps", "default", "kube-root-ca.crt"),
        Ask("update", "", "configmaps", NAMESPACE, "someone-elses"),
        Ask("patch", "", "configmaps", NAMESPACE, "someone-elses"),
        Ask("delete", "", "configmaps", "default", ROOT_CONFIGMAP),
        Ask("get", "", "configmaps", "default", "someone-elses"),
        Ask("list", "", "configmaps"),
        Ask("update", "", "namespaces", "", "default"),
        Ask("list", "", "pods"),
        Ask("list", "networking.istio.io", "virtualservices"),
        Ask("get", "", "secrets", NAMESPACE, "galley-webhook-tls"),
        Ask("get", "", "secrets", "default", "istio-ca-secret"),
        Ask("create", "", "secrets", "default"),
    ],
    "node-agent": [
        Ask("get", "", "configmaps", "default", ROOT_CONFIGMAP),
        Ask("create", "authentication.k8s.io", "tokenreviews"),
        Ask("list", "", "pods"),
    ],
    "cni-agent": [
        Ask("update", "", "pods", "default", "any"),
        Ask("patch", "", "pods", "default", "any"),
        Ask("delete", "", "pods", "default", "any"),
        Ask("create", "", "pods", "default"),
        Ask("update", "", "pods", "default", "any", "status"),
        Ask("create", "", "pods", "default", "any", "eviction"),
        Ask("list", "", "services"),
        Ask("list", "", "nodes"),
    ],
    GATEWAY: [
        Ask("get", "", "secrets", NAMESPACE, "istio-ca-secret"),
        Ask("list", "", "secrets", NAMESPACE),
        Ask("get", "", "secrets", "default", "tls-cred"),
        Ask("create", "", "secrets", GATEWAY_NAMESPACE),
        Ask("update", "", "secrets", GATEWAY_NAMESPACE, "any-credential"),
        Ask("delete", "", "secrets", GATEWAY_NAMESPACE, "any-credential"),
        Ask("get", "", "configmaps", GATEWAY_NAMESPACE, ROOT_CONFIGMAP),
        Ask("list", "", "pods", GATEWAY_NAMESPACE),
        Ask("create", "authentication.k8s.io", "tokenreviews"),
    ],
}


def allowed(authorization: Any, account: str, ask: Ask, namespace: str = "") -> bool:
    """The API server's answer to a SubjectAccessReview for ``<namespace>:<account>`` (by default
    the account's own namespace: meshplane-system, istio-ingress for the gateway)."""
    namespace = namespace or (GATEWAY_NAMESPACE if account == GATEWAY else NAMESPACE)
    attributes = {k: v for k, v in ask._asdict().items() if v}
    review = {
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{account}",
            # The groups a real token of that account carries (so default bindings apply too).
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        }
    }
    return bool(authorization.create_subject_access_review(review).status.allowed)


def test_the_base_defines_exactly_the_accounts_the_table_covers(applied_rbac: list[dict[str, Any]]) -> None:
    accounts = {o["metadata"]["name"] for o in applied_rbac if o["kind"] == "ServiceAccount"}
    assert accounts == set(ALLOWED) == set(REFUSED)


@pytest.fixture
def authorization(kube_api: Any, applied_rbac: list[dict[str, Any]]) -> Any:
    """An authorization client, once every component's first allowed row is in effect (the RBAC
    authorizer reads roles and bindings from informers, a moment after they are applied)."""
    api: Any = client.AuthorizationV1Api(kube_api)
    for account, asks in ALLOWED.items():
        for ask in asks[:1]:
            wait_until(functools.partial(allowed, api, account, ask), f"{account} to be allowed to {ask}")
    return api


def test_each_component_account_has_what_it_needs_and_nothing_more(authorization: Any) -> None:
    wrong: list[str] = []
    for account in ALLOWED:
        for ask in ALLOWED[account]:
            if not allowed(authorization, account, ask):
                wrong.append(f"{account} must be allowed to {ask}, but is refused")
        for ask in REFUSED[account] + NOBODY:
            if allowed(authorization, account, ask):
                wrong.append(f"{account} must be refused {ask}, but is allowed")
    assert not wrong, "\n".join(wrong)


def test_a_namespace_default_account_gets_none_of_the_components_rights(authorization: Any) -> None:
    """The bindings name their accounts exactly: the namespace's default account gains nothing."""
    granted = [
        f"{namespace}:default may {ask}"
        for namespace in (NAMESPACE, GATEWAY_NAMESPACE)
        for asks in ALLOWED.values()
        for ask in asks
        if allowed(authorization, "default", ask, namespace)
    ]
    assert granted == []


@pytest.fixture
def as_citadel(
    kube_api: Any, kube_cluster: KubeCluster, authorization: Any, tmp_path: Path
) -> Iterator[tuple[Any, Any]]:
    """(CoreV1Api as the citadel ServiceAccount, as the admin); every root ConfigMap removed after."""
    core: Any = client.CoreV1Api(kube_api)
    token = core.create_namespaced_service_account_token("citadel", NAMESPACE, {"spec": {}}).status.token
    kubeconfig = kube_cluster.token_kubeconfig(tmp_path / "citadel.kubeconfig", token)
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:  # type: ignore[no-untyped-call]
        try:
            yield client.CoreV1Api(api), core
        finally:  # the sync writes one into every namespace of the session
            for namespace in core.list_namespace().items:
                if core.list_namespaced_config_map(
                    namespace.metadata.name, field_selector=f"metadata.name={ROOT_CONFIGMAP}"
                ).items:
                    core.delete_namespaced_config_map(ROOT_CONFIGMAP, namespace.metadata.name)


def terminating(core: Any) -> list[str]:
    return [n.metadata.name for n in core.list_namespace().items if n.status.phase == "Terminating"]


def test_citadel_publishes_its_root_configmap_with_only_the_rights_k8s_grants(
    as_citadel: tuple[Any, Any], kube_namespace: str
) -> None:
    """Citadel's own ConfigMap sync, run as the citadel ServiceAccount: the narrowed rights suffice."""
    citadel, core = as_citadel
    # Namespaces deleted by earlier tests must be gone first: see the test below.
    wait_until(lambda: terminating(core) == [], "no namespace Terminating", timeout=60)
    for roots in ("first root\n", "rotated root\n"):
        assert sync_root_configmaps(citadel, roots) >= 1  # created, then updated
        published = core.read_namespaced_config_map(ROOT_CONFIGMAP, kube_namespace)
        assert published.data == {"root-cert.pem": roots}
    core.create_namespaced_config_map(kube_namespace, {"metadata": {"name": "app"}, "data": {"k": "v"}})
    with pytest.raises(client.exceptions.ApiException) as refused:
        citadel.replace_namespaced_config_map("app", kube_namespace, {"metadata": {"name": "app"}})
    assert refused.value.status == 403
    with pytest.raises(client.exceptions.ApiException) as refused:
        citadel.read_namespaced_config_map("app", kube_namespace)
    assert refused.value.status == 403


def test_a_terminating_namespace_does_not_stop_the_root_configmap_reaching_the_others(
    as_citadel: tuple[Any, Any], kube_namespace: str
) -> None:
    citadel, core = as_citadel
    held = f"a-terminating-{kube_namespace}"  # listed before kube_namespace
    core.create_namespace({"metadata": {"name": held}})
    hold = {"metadata": {"name": "held", "finalizers": ["meshplane.test/hold"]}}
    core.create_namespaced_config_map(held, hold)
    core.delete_namespace(held)
    try:
        wait_until(lambda: held in terminating(core), f"namespace {held} Terminating")
        sync_root_configmaps(citadel, "root\n")
        published = core.read_namespaced_config_map(ROOT_CONFIGMAP, kube_namespace)
        assert published.data == {"root-cert.pem": "root\n"}
    finally:
        core.patch_namespaced_config_map("held", held, {"metadata": {"finalizers": None}})
