"""Least privilege: each component's ServiceAccount may do what its job needs and nothing more."""

from __future__ import annotations

from typing import Any

from .conftest import K8S, Manifests

READ = {"get", "list", "watch"}


def rules_of(manifests: Manifests, service_account: str) -> list[dict[str, Any]]:
    """Every RBAC rule granted to ``service_account`` through any (Cluster)RoleBinding."""
    roles = {(r["kind"], r["metadata"]["name"]): r for r in manifests.of_kind("ClusterRole")}
    roles.update({(r["kind"], r["metadata"]["name"]): r for r in manifests.of_kind("Role")})
    rules: list[dict[str, Any]] = []
    for binding in manifests.of_kind("ClusterRoleBinding") + manifests.of_kind("RoleBinding"):
        subjects = binding.get("subjects", [])
        if any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in subjects):
            ref = binding["roleRef"]
            rules.extend(roles[(ref["kind"], ref["name"])]["rules"])
    return rules


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples, for rules without resourceNames."""
    return {
        (group, resource, verb)
        for rule in rules
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_pilot_has_no_kubernetes_api_access_at_all(rendered: Manifests) -> None:
    assert rules_of(rendered, "pilot") == []
    assert not [
        r
        for r in rendered.of_kind("ClusterRole") + rendered.of_kind("Role")
        if "pilot" in r["metadata"]["name"]
    ]
    account = rendered.one("ServiceAccount", "pilot")
    pod = rendered.one("Deployment", "pilot")["spec"]["template"]["spec"]
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "pilot"


def test_galley_only_reads_config_and_may_touch_only_its_own_webhook(rendered: Manifests) -> None:
    rules = rules_of(rendered, "galley")
    # The one write: the dry-run create of an always-rejected Gateway that proves the webhook works.
    assert {g for g in grants(rules) if g[2] not in READ} == {("networking.istio.io", "gateways", "create")}
    assert ("networking.istio.io", "*", "watch") in grants(rules)
    assert ("discovery.k8s.io", "endpointslices", "list") in grants(rules)
    assert {("", "services", "watch"), ("", "pods", "watch"), ("", "namespaces", "watch")} <= grants(rules)
    validating, mutating, mesh_config = [r for r in rules if r.get("resourceNames")]
    # the MeshConfig: the istio ConfigMap of its namespace (a Role there), read only, by name
    assert (mesh_config["resources"], mesh_config["resourceNames"]) == (["configmaps"], ["istio"])
    assert set(mesh_config["verbs"]) == READ
    (config,) = rendered.of_kind("ValidatingWebhookConfiguration")
    assert validating["resources"] == ["validatingwebhookconfigurations"]
    assert validating["resourceNames"] == [config["metadata"]["name"]]
    assert set(validating["verbs"]) - READ == {"patch", "update"}
    (injector,) = rendered.of_kind("MutatingWebhookConfiguration")
    assert mutating["resources"] == ["mutatingwebhookconfigurations"]
    assert mutating["resourceNames"] == [injector["metadata"]["name"]]
    assert set(mutating["verbs"]) - READ == {"patch", "update"}


def test_citadel_reviews_tokens_and_publishes_the_root_configmap(rendered: Manifests) -> None:
    rules = rules_of(rendered, "citadel")
    assert grants(rules) == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("", "configmaps", "create"),  # RBAC cannot scope a create by name
        ("", "secrets", "create"),  # its CA Secret (a Role in its own namespace, below)
        *{("", "namespaces", verb) for verb in READ},
    }
    scoped = {
        (r["resources"][0], name, verb)
        for r in rules
        for name in r.get("resourceNames", [])
        for verb in r["verbs"]
    }
    assert scoped == {
        ("configmaps", "istio-ca-root-cert", "get"),
        ("configmaps", "istio-ca-root-cert", "update"),
        ("secrets", "istio-ca-secret", "get"),
        ("secrets", "istio-ca-secret", "update"),
    }
    (role,) = [
        r for r in rendered.of_kind("Role") if any("secrets" in rule["resources"] for rule in r["rules"])
    ]
    assert role["metadata"]["namespace"] == "meshplane-system"


def test_cni_agent_only_reads_pods(rendered: Manifests) -> None:
    assert grants(rules_of(rendered, "cni-agent")) == {("", "pods", verb) for verb in READ}


def test_node_agent_has_no_rbac_and_no_identity_of_its_own(rendered: Manifests) -> None:
    """Per node, the agent must never lend its own token to the workloads it serves."""
    assert rules_of(rendered, "node-agent") == []
    pod = rendered.one("DaemonSet", "node-agent")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert not [v for v in pod["volumes"] if "projected" in v]
    (agent,) = [c for c in pod["containers"] if c["name"] == "node-agent"]
    assert not [a for a in agent["args"] if a.startswith("--token-file")]


def test_no_role_grants_wildcard_verbs_or_secrets_beyond_the_ca_secret(rendered: Manifests) -> None:
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], role["metadata"]["name"]
            assert "*" not in rule["apiGroups"], role["metadata"]["name"]
            if "secrets" in rule["resources"]:  # only Citadel's own CA Secret, in its namespace
                assert role["kind"] == "Role", role["metadata"]["name"]
                assert rule["verbs"] == ["create"] or rule.get("resourceNames") == ["istio-ca-secret"]


def test_every_binding_names_an_existing_service_account_and_role(rendered: Manifests) -> None:
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]) for a in rendered.of_kind("ServiceAccount")
    }
    roles = {r["metadata"]["name"] for r in rendered.of_kind("ClusterRole")}
    bindings = rendered.of_kind("ClusterRoleBinding")
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts, subject
    used = {w["spec"]["template"]["spec"].get("serviceAccountName") for w in rendered.workloads()}
    assert used - {None} <= {name for _, name in accounts}


def test_the_gateway_reads_secrets_of_its_own_namespace_only(kustomize: Any) -> None:
    """k8s/gateway: the ingress gateway's account, outside meshplane-system (Citadel's CA key lives
    there), may read Secrets in its own namespace for credentialName, and nothing else."""
    from .test_k8s_manifests import k8s_errors

    gateway = Manifests("gateway", kustomize.render(K8S / "gateway"))
    assert k8s_errors(gateway.objects) == []
    (namespace,) = gateway.of_kind("Namespace")
    assert namespace["metadata"]["name"] == "istio-ingress"
    assert gateway.of_kind("ClusterRole") == gateway.of_kind("ClusterRoleBinding") == []
    (role,) = gateway.of_kind("Role")
    assert role["metadata"]["namespace"] == "istio-ingress"
    assert grants(role["rules"]) == {("", "secrets", verb) for verb in READ}
    (binding,) = gateway.of_kind("RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "istio-ingressgateway", "namespace": "istio-ingress"}
    ]
