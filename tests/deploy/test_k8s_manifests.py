"""The rendered k8s/ kustomizations: valid for the pinned Kubernetes, wired together, hardened."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from meshplane.citadel.nodeagent.settings import parse_agent_settings as agent_settings
from meshplane.citadel.settings import parse_settings as citadel_settings
from meshplane.galley.settings import parse_args as galley_settings
from meshplane.pilot.settings import parse_args as pilot_settings
from meshplane.shared.inject import InjectorConfig
from meshplane.shared.meshconfig import parse_mesh_config

from .conftest import K8S, KUSTOMIZATIONS, Manifests, k8s_errors

CONTROL_PLANE = ["galley", "pilot", "citadel"]


def test_every_object_validates_against_the_pinned_kubernetes_schemas(rendered: Manifests) -> None:
    assert len(rendered.objects) > 40
    assert k8s_errors(rendered.objects) == []


def test_schema_check_rejects_a_misspelt_field(base: Manifests) -> None:
    broken = copy.deepcopy(base.one("Deployment", "pilot"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    errors = k8s_errors([broken])
    assert len(errors) == 1 and "readinesProbe" in errors[0], errors


def test_namespaced_objects_land_in_meshplane_system(rendered: Manifests, kustomize: ModuleType) -> None:
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in kustomize.CLUSTER_SCOPED_KINDS:
            assert namespace is None, f"{obj['kind']} {obj['metadata']['name']} is cluster-scoped"
        else:
            assert namespace == "meshplane-system", f"{obj['kind']} {obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "meshplane"


def test_overlays_set_replicas_and_pilot_autoscaling_bounds(
    base: Manifests, dev: Manifests, prod: Manifests
) -> None:
    bounds = {
        name: (m.one("HorizontalPodAutoscaler", "pilot")["spec"]["minReplicas"],
               m.one("HorizontalPodAutoscaler", "pilot")["spec"]["maxReplicas"])
        for name, m in {"base": base, "dev": dev, "prod": prod}.items()
    }  # fmt: skip
    assert bounds == {"base": (1, 5), "dev": (1, 1), "prod": (2, 10)}
    assert prod.one("StatefulSet", "nats")["spec"]["replicas"] == 3
    assert prod.one("Deployment", "pilot")["spec"]["replicas"] == 2
    for single in (base, dev):
        assert {w["metadata"]["name"]: w["spec"].get("replicas") for w in single.workloads()} == {
            "nats": 1,
            "galley": 1,
            "pilot": 1,
            "citadel": 1,
            "node-agent": None,
            "cni-agent": None,
        }
    prod_pilot = prod.one("Deployment", "pilot")["spec"]["template"]["spec"]["containers"][0]
    base_pilot = base.one("Deployment", "pilot")["spec"]["template"]["spec"]["containers"][0]
    assert prod_pilot["resources"]["requests"]["cpu"] == "1" != base_pilot["resources"]["requests"]["cpu"]


def test_prod_nats_is_a_three_server_jetstream_cluster(prod: Manifests, base: Manifests) -> None:
    conf = prod.one("ConfigMap", "nats-config")["data"]["nats.conf"]
    routes = [f"nats-{i}.nats-headless.meshplane-system.svc.cluster.local:6222" for i in range(3)]
    assert "cluster {" in conf and "jetstream {" in conf
    assert all(route in conf for route in routes)
    assert "cluster {" not in base.one("ConfigMap", "nats-config")["data"]["nats.conf"]
    nats = prod.one("StatefulSet", "nats")["spec"]
    assert nats["serviceName"] == "nats-headless"
    assert nats["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    mounts = {m["name"]: m["mountPath"] for m in nats["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/data"


@pytest.mark.parametrize("name", CONTROL_PLANE)
def test_control_plane_deployments_are_probed_sized_and_hardened(rendered: Manifests, name: str) -> None:
    pod = rendered.one("Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    assert container["image"] == f"meshplane/{name}:0.1.0"
    assert container["livenessProbe"] and container["readinessProbe"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert f"--nats-url=nats://nats.{'meshplane-system'}.svc:4222" in container["args"]


def test_probes_use_the_documented_endpoints(base: Manifests) -> None:
    def probe_paths(name: str) -> tuple[str, str]:
        container = base.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        ready = container["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        return ready["path"], str(ports[ready["port"]])

    assert probe_paths("galley") == ("/readyz", "15014")
    assert probe_paths("pilot") == ("/ready", "15014")
    assert probe_paths("citadel") == ("/ready", "15014")
    galley = base.one("Deployment", "galley")["spec"]["template"]["spec"]["containers"][0]
    assert galley["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_every_controller_selects_its_own_pod_template(rendered: Manifests) -> None:
    for workload in rendered.workloads():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_services_and_budgets_select_pods_and_name_real_ports(rendered: Manifests) -> None:
    pods = [w["spec"]["template"] for w in rendered.workloads()]
    for service in rendered.of_kind("Service"):
        selected = [p for p in pods if service["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        port_names = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
    for budget in rendered.of_kind("PodDisruptionBudget"):
        labels = budget["spec"]["selector"]["matchLabels"]
        assert any(labels.items() <= p["metadata"]["labels"].items() for p in pods), budget["metadata"]
    assert {b["metadata"]["name"] for b in rendered.of_kind("PodDisruptionBudget")} >= set(CONTROL_PLANE)
    assert rendered.one("PodDisruptionBudget", "pilot")["spec"]["minAvailable"] == 1


def test_galley_service_maps_443_to_the_webhook_port(base: Manifests) -> None:
    ports = {p["port"]: p["targetPort"] for p in base.one("Service", "galley")["spec"]["ports"]}
    container = base.one("Deployment", "galley")["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[ports[443]] == 15017
    assert "--webhook-addr=0.0.0.0:15017" in container["args"]


def test_pilot_autoscales_on_cpu(base: Manifests) -> None:
    hpa = base.one("HorizontalPodAutoscaler", "pilot")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pilot"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_webhook_configuration_matches_istiods(base: Manifests) -> None:
    (config,) = base.of_kind("ValidatingWebhookConfiguration")
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    (hook,) = config["webhooks"]
    assert hook["name"] == "validation.meshplane.io"
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert hook["sideEffects"] == "None"
    assert hook["failurePolicy"] == "Ignore"  # galley flips it to Fail once it serves
    assert hook["clientConfig"]["service"] == {
        "name": "galley",
        "namespace": "meshplane-system",
        "path": "/validate",
        "port": 443,
    }
    (rule,) = hook["rules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["*"]
    assert set(rule["apiGroups"]) == {
        "networking.istio.io",
        "security.istio.io",
        "telemetry.istio.io",
        "extensions.istio.io",
    }


def test_cni_agent_daemonset_runs_privileged_on_the_host_network_on_every_node(base: Manifests) -> None:
    pod = base.one("DaemonSet", "cni-agent")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["image"] == "meshplane/cni:0.1.0"
    assert container["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    on_host = [m for m in container["volumeMounts"] if m["name"] in host_paths]
    mounts = {m["mountPath"]: host_paths[m["name"]] for m in on_host}
    assert mounts["/host/opt/cni/bin"] == "/opt/cni/bin"
    assert mounts["/host/etc/cni/net.d"] == "/etc/cni/net.d"
    assert "--cni-bin-dir=/host/opt/cni/bin" in container["args"]
    assert "--cni-conf-dir=/host/etc/cni/net.d" in container["args"]


def test_node_agent_serves_sds_from_a_host_socket_directory(base: Manifests) -> None:
    pod = base.one("DaemonSet", "node-agent")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    socket_dir = "/var/run/secrets/workload-spiffe-uds"
    assert f"--sds-socket={socket_dir}/socket" in container["args"]
    assert "--ca-addr=citadel.meshplane-system.svc:8060" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == socket_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"]["type"] == "DirectoryOrCreate"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # only the init container that hands the host directory to the agent's user runs as root
    (init,) = pod["initContainers"]
    assert init["command"] == ["chown", "10001:10001", socket_dir]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_citadel_keeps_ca_keys_in_memory_and_accepts_plugged_in_cacerts(base: Manifests) -> None:
    pod = base.one("Deployment", "citadel")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ca"]["emptyDir"]["medium"] == "Memory"
    assert volumes["cacerts"]["secret"] == {"secretName": "cacerts", "optional": True, "defaultMode": 0o400}
    assert "--ca-dir=/var/run/ca" in pod["containers"][0]["args"]
    (init,) = pod["initContainers"]
    assert "chmod 0600" in init["command"][-1]


def test_network_policies_deny_by_default_and_open_each_needed_port(base: Manifests) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in base.of_kind("NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny

    def ingress_ports(app: str) -> set[int]:
        return {
            port["port"]
            for spec in policies.values()
            if spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == app
            for rule in spec.get("ingress", [])
            for port in rule.get("ports", [])
        }

    assert ingress_ports("nats") == {4222, 6222}
    assert 15017 in ingress_ports("galley")
    assert ingress_ports("pilot") == {15012, 15014}  # ADS over mutual TLS; monitoring
    assert 8060 in ingress_ports("citadel")
    # every bus client carries the label that opens nats:4222 to it
    for name in CONTROL_PLANE:
        labels = base.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels["meshplane.io/bus-client"] == "true"


def test_renderer_refuses_kustomize_features_it_does_not_apply(tmp_path: Path, kustomize: ModuleType) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(kustomize.KustomizeError, match="namePrefix"):
        kustomize.render(tmp_path)


def test_renderer_reports_a_patch_path_that_does_not_exist(tmp_path: Path, kustomize: ModuleType) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\n"
        "patches:\n"
        "  - target: {kind: ConfigMap, name: a}\n"
        "    patch: '[{op: replace, path: /data/missing, value: x}]'\n"
    )
    with pytest.raises(kustomize.KustomizeError, match=r"patches\[0\].*/data/missing"):
        kustomize.render(tmp_path)


def test_citadel_in_kubernetes_trusts_only_tokenreview_and_publishes_the_root(base: Manifests) -> None:
    args = base.one("Deployment", "citadel")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--token-review", "--no-local-issuer", "--kubernetes"} <= set(args)
    assert "--hostname=citadel.meshplane-system.svc" in args
    node_agent = base.one("DaemonSet", "node-agent")["spec"]["template"]["spec"]
    root = next(v for v in node_agent["volumes"] if v["name"] == "ca-root")
    assert root["configMap"]["name"] == "istio-ca-root-cert"


def test_webhook_ca_bundle_comes_from_galleys_certificate(base: Manifests) -> None:
    (config,) = base.of_kind("ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "meshplane-system/galley"
    pod = base.one("Deployment", "galley")["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "galley-tls"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renderer_output_equals_kubectl_kustomize(name: str, all_rendered: dict[str, Manifests]) -> None:
    """Where kubectl is installed, its built-in kustomize must produce exactly the same objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the renderer is then checked by the tests above only")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / name)], capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stderr

    def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}

    theirs = by_key([doc for doc in yaml.safe_load_all(result.stdout) if doc])
    mine = by_key(all_rendered[name].objects)
    assert set(mine) == set(theirs)
    for key, obj in mine.items():
        assert obj == theirs[key], key


def test_sidecar_injector_is_istios_four_webhooks_by_service_reference(base: Manifests) -> None:
    (config,) = base.of_kind("MutatingWebhookConfiguration")
    assert config["metadata"]["labels"]["istio.io/rev"] == "default"
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "meshplane-system/galley"
    hooks = {h["name"]: h for h in config["webhooks"]}
    assert set(hooks) == {
        f"{p}sidecar-injector.istio.io" for p in ("rev.namespace.", "rev.object.", "namespace.", "object.")
    }
    for hook in hooks.values():
        assert hook["clientConfig"]["service"] == {
            "name": "galley",
            "namespace": "meshplane-system",
            "path": "/inject",
            "port": 443,
        }
        assert (hook["failurePolicy"], hook["sideEffects"], hook["reinvocationPolicy"]) == (
            "Fail",
            "None",
            "Never",
        )
        assert hook["rules"] == [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ]
    namespace = hooks["namespace.sidecar-injector.istio.io"]["namespaceSelector"]
    assert namespace == {
        "matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]
    }


MESH_CONFIG_DIR = "/etc/istio/config"


def test_the_istio_configmap_holds_the_mesh_config_with_the_control_planes_namespace_as_root(
    rendered: Manifests,
) -> None:
    mesh = rendered.one("ConfigMap", "istio")["data"]["mesh"]
    config = parse_mesh_config(mesh, "ConfigMap istio data.mesh")
    assert (config.root_namespace, config.trust_domain, config.not_applied) == (
        "meshplane-system",
        "cluster.local",
        (),
    )


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "pilot"), ("Deployment", "citadel"), ("DaemonSet", "node-agent")]
)
def test_pilot_citadel_and_node_agents_mount_the_istio_configmap_and_read_it(
    base: Manifests, kind: str, name: str
) -> None:
    pod = base.one(kind, name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volume = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "istio")
    assert "items" not in volume["configMap"]  # each key a file of its name: mesh
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert (mount["mountPath"], mount["readOnly"]) == (MESH_CONFIG_DIR, True)
    assert f"--mesh-config={MESH_CONFIG_DIR}/mesh" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--trust-domain")]  # one source: the mesh config


def test_galley_reads_the_istio_configmap_of_its_namespace_through_the_api(base: Manifests) -> None:
    """Not mounted (kubelet's sync delay): read by name through the API, with only that right."""
    pod = base.one("Deployment", "galley")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not [v for v in pod["volumes"] if "configMap" in v]
    assert not [a for a in container["args"] if a.startswith(("--mesh-config", "--namespace"))]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    role = base.one("Role", "meshplane-galley-meshconfig")
    assert role["metadata"]["namespace"] == "meshplane-system"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["istio"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = base.one("RoleBinding", "meshplane-galley-meshconfig")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "galley", "namespace": "meshplane-system"}
    ]


def test_the_services_own_parsers_take_meshplane_system_as_root_from_the_manifests(
    base: Manifests, tmp_path: Path
) -> None:
    """Each service's argument parser, given its container's args and the ConfigMap as mounted."""
    (tmp_path / "mesh").write_text(base.one("ConfigMap", "istio")["data"]["mesh"])

    def args(name: str, kind: str = "Deployment") -> list[str]:
        container = base.one(kind, name)["spec"]["template"]["spec"]["containers"][0]
        return [a.replace(f"{MESH_CONFIG_DIR}/", f"{tmp_path}/") for a in container["args"]]

    assert pilot_settings(args("pilot"), {}).root_namespace == "meshplane-system"
    galley = galley_settings(args("galley"))  # its MeshConfig comes through the API, below
    assert (galley.mesh_config, galley.mesh_configmap) == (None, "istio")
    assert citadel_settings(args("citadel"), {}).trust_domain == "cluster.local"
    assert agent_settings(args("node-agent", "DaemonSet"), {}).trust_domain == "cluster.local"


def _ports(value: Any) -> set[int]:
    """Every ``port``, ``containerPort`` and ``targetPort`` number anywhere in ``value``."""
    if isinstance(value, list):
        return set().union(*map(_ports, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    own = {v for k, v in value.items() if k in ("port", "containerPort", "targetPort") and isinstance(v, int)}
    return own.union(*map(_ports, value.values()))


def test_xds_is_on_istios_tls_port_and_debug_stays_inside_the_pod(base: Manifests, tmp_path: Path) -> None:
    """ADS over mutual TLS on 15012 (Service, container, policy, injected proxies); monitoring
    (probes, Prometheus, meshctl proxy-status's /debug/syncz) on the pod address; every other
    /debug endpoint on the pod's loopback, opened by no Service, container port or policy."""
    (tmp_path / "mesh").write_text(base.one("ConfigMap", "istio")["data"]["mesh"])

    def args(name: str) -> list[str]:
        container = base.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        return [a.replace(f"{MESH_CONFIG_DIR}/", f"{tmp_path}/") for a in container["args"]]

    pilot = pilot_settings(args("pilot"), {})
    assert (pilot.grpc_host, pilot.grpc_port, pilot.xds_plaintext) == ("0.0.0.0", 15012, False)
    assert (pilot.http_host, pilot.http_port) == ("0.0.0.0", 15014)
    assert (pilot.debug_host, pilot.debug_port) == ("127.0.0.1", 8080)
    galley = galley_settings(args("galley"))
    assert galley.monitoring_addr == ("0.0.0.0", 15014)
    assert galley.debug_addr == ("127.0.0.1", 9876)
    service = base.one("Service", "pilot")["spec"]["ports"]
    assert {p["name"]: p["port"] for p in service} == {"tls-xds": 15012, "http-monitoring": 15014}
    assert InjectorConfig().pilot == "pilot.meshplane-system.svc:15012"  # what injected proxies dial
    gateway = Manifests("gateway", list(yaml.safe_load_all((K8S / "gateway" / "gateway.yaml").read_text())))
    pod = gateway.one("Deployment", "istio-ingressgateway")["spec"]["template"]["spec"]
    (proxy,) = [c for c in pod["containers"] if c["name"] == "istio-proxy"]  # and gateways
    assert "--pilot pilot.meshplane-system.svc:15012 " in proxy["args"][0]
    opened = _ports(base.objects)
    assert 15012 in opened
    assert not opened & {15010, 8080, 9876}
