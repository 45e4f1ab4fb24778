"""``meshctl manifest generate``: the install resource, its profiles and --set, rendered from k8s/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import K8S, Manifests, k8s_errors


def generate(
    *args: str, files: dict[str, str] | None = None, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "meshplane.ctl.main", "manifest", "generate", "-d", str(K8S), *args]
    for name, text in (files or {}).items():
        assert tmp is not None
        (tmp / name).write_text(text)
        argv += ["-f", str(tmp / name)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def objects(*args: str, **kw: Any) -> Manifests:
    done = generate(*args, **kw)
    assert done.returncode == 0, done.stderr
    return Manifests("install", [o for o in yaml.safe_load_all(done.stdout) if o])


def refused(*args: str, **kw: Any) -> str:
    done = generate(*args, **kw)
    assert done.returncode == 2, (done.stdout[:300], done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    return done.stderr


def gateway_objects(manifests: Manifests) -> list[dict[str, Any]]:
    return [
        o for o in manifests if o["metadata"]["labels"]["operator.istio.io/component"].endswith("Gateways")
    ]


def names(manifests: Manifests, kind: str) -> set[tuple[str | None, str]]:
    return {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in manifests.of_kind(kind)}


@pytest.fixture(scope="module")
def default() -> Manifests:
    return objects()


def test_default_profile_is_the_base_plus_an_ingress_gateway_all_valid(
    default: Manifests, kustomize: Any
) -> None:
    base = kustomize.render(K8S / "base")
    keys = {(o["kind"], o["metadata"]["name"]) for o in default}
    assert {(o["kind"], o["metadata"]["name"]) for o in base} <= keys
    assert names(default, "Deployment") >= {
        ("meshplane-system", "pilot"),
        ("meshplane-system", "galley"),
        ("meshplane-system", "citadel"),
        ("istio-ingress", "istio-ingressgateway"),
    }
    assert ("istio-egress", "istio-egressgateway") not in names(default, "Deployment")
    gateway_svc = default.one("Service", "istio-ingressgateway")
    assert gateway_svc["spec"]["type"] == "LoadBalancer"
    assert gateway_svc["spec"]["selector"] == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    assert k8s_errors(default.objects) == []


def test_every_object_carries_the_install_labels(default: Manifests) -> None:
    for obj in default:
        labels = obj["metadata"]["labels"]
        assert labels["operator.istio.io/managed"] == "Reconcile", obj["metadata"]["name"]
        # a Namespace labelled istio.io/rev would have its pods (the control plane's) injected
        assert labels.get("istio.io/rev") == (None if obj["kind"] == "Namespace" else "default")
        assert labels["install.operator.istio.io/owning-resource"] == "installed-state"
    component = {
        o["metadata"]["name"]: o["metadata"]["labels"]["operator.istio.io/component"]
        for o in default.workloads()
    }
    assert component == {
        "nats": "Base",
        "galley": "Galley",
        "pilot": "Pilot",
        "citadel": "Citadel",
        "node-agent": "Citadel",
        "cni-agent": "Cni",
        "istio-ingressgateway": "IngressGateways",
    }


def test_gateway_gets_the_mesh_config_and_reads_secrets_only_in_its_namespace(default: Manifests) -> None:
    assert ("istio-ingress", "istio") in names(default, "ConfigMap")
    binding = default.one("RoleBinding", "istio-ingressgateway-sds")
    assert binding["metadata"]["namespace"] == "istio-ingress"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "istio-ingressgateway", "namespace": "istio-ingress"}
    ]


def test_profiles_minimal_demo_and_empty() -> None:
    minimal = objects("--set", "profile=minimal")
    assert gateway_objects(minimal) == []
    assert minimal.one("Deployment", "pilot")
    demo = objects("--set", "profile=demo")
    egress = demo.one("Service", "istio-egressgateway")
    assert (egress["metadata"]["namespace"], egress["spec"]["type"]) == ("istio-egress", "ClusterIP")
    assert egress["spec"]["selector"]["istio"] == "egressgateway"
    mesh = yaml.safe_load(
        next(
            o
            for o in demo.of_kind("ConfigMap")
            if o["metadata"] == o["metadata"]
            and o["metadata"]["name"] == "istio"
            and o["metadata"]["namespace"] == "meshplane-system"
        )["data"]["mesh"]
    )
    assert mesh["accessLogFile"] == "/dev/stdout" and mesh["rootNamespace"] == "meshplane-system"
    assert objects("--set", "profile=empty").objects == []


def test_set_flags_reach_the_workloads() -> None:
    got = objects(
        "--set",
        "components.pilot.k8s.replicaCount=3",
        "--set",
        "components.pilot.k8s.nodeSelector.pool=mesh",
        "--set",
        "components.pilot.k8s.env[0].name=PILOT_PUSH_THROTTLE",
        "--set",
        "components.pilot.k8s.env[0].value=50",
        "--set",
        "components.pilot.k8s.hpaSpec.maxReplicas=4",
        "--set",
        "values.global.hub=registry.example/mp",
        "--set",
        "tag=0.2.0",
        "--set",
        "components.ingressGateways[name:istio-ingressgateway].enabled=false",
        "--set",
        "components.cni.enabled=false",
    )
    pilot = got.one("Deployment", "pilot")
    pod = pilot["spec"]["template"]["spec"]
    assert pilot["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == {"pool": "mesh"}
    assert {"name": "PILOT_PUSH_THROTTLE", "value": "50"} in pod["containers"][0]["env"]
    assert pod["containers"][0]["image"] == "registry.example/mp/pilot:0.2.0"
    assert got.one("HorizontalPodAutoscaler", "pilot")["spec"]["maxReplicas"] == 4
    assert got.one("StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "nats:"
    )
    assert not got.of_kind("DaemonSet") or {d["metadata"]["name"] for d in got.of_kind("DaemonSet")} == {
        "node-agent"
    }
    assert gateway_objects(got) == []
    assert k8s_errors(got.objects) == []


def test_an_install_file_and_another_namespace(tmp_path: Path) -> None:
    iop = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: prod}
spec:
  meshConfig: {trustDomain: prod.example}
  values: {global: {istioNamespace: mesh-prod}}
  components:
    citadel: {k8s: {resources: {requests: {cpu: 200m, memory: 256Mi}}}}
"""
    got = objects(files={"iop.yaml": iop}, tmp=tmp_path)
    for obj in got:
        assert obj["metadata"]["labels"]["install.operator.istio.io/owning-resource"] == "prod"
        assert obj["metadata"].get("namespace") in (None, "mesh-prod", "istio-ingress"), obj["metadata"]
    assert "meshplane-system" not in yaml.safe_dump_all(got.objects)
    assert ("mesh-prod", "citadel") in names(got, "Deployment")
    citadel = got.one("Deployment", "citadel")["spec"]["template"]["spec"]["containers"][0]
    assert citadel["resources"] == {"requests": {"cpu": "200m", "memory": "256Mi"}}
    mesh = yaml.safe_load(
        next(o for o in got.of_kind("ConfigMap") if o["metadata"]["name"] == "istio")["data"]["mesh"]
    )
    assert mesh == {"rootNamespace": "mesh-prod", "trustDomain": "prod.example"}


def test_unknown_set_path_is_refused_naming_it() -> None:
    err = refused("--set", "components.pilot.k8s.replicas=3")
    assert "unknown path components.pilot.k8s.replicas" in err and "replicaCount" in err
    assert "unknown path components.pilott" in refused("--set", "components.pilott.enabled=false")
    assert "is a value" in refused("--set", "components.pilot.enabled.really=true")
    assert "expected path=value" in refused("--set", "profile")


def test_unknown_field_in_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    iop = """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  components:
    pilot:
      k8s:
        replicas: 2
"""
    err = refused(files={"bad.yaml": iop}, tmp=tmp_path)
    assert f"{tmp_path / 'bad.yaml'}: spec.components.pilot.k8s.replicas: unknown field" in err
    wrong_kind = "apiVersion: install.istio.io/v1alpha1\nkind: Istio\nspec: {}\n"
    assert "kind: expected IstioOperator" in refused(files={"kind.yaml": wrong_kind}, tmp=tmp_path)


def test_bad_revision_profile_and_mesh_config_are_refused() -> None:
    assert "revision '1.24' is not a DNS label" in refused("--revision", "1.24")
    err = refused("--set", "profile=huge")
    assert "profile 'huge' does not exist" in err and "minimal" in err
    assert "trustDomain" in refused("--set", "meshConfig.trustDomain=Not A Domain")


def test_fields_not_applied_are_warned() -> None:
    done = generate("--set", "meshConfig.enablePrometheusMerge=true", "--set", "values.global.network=net1")
    assert done.returncode == 0, done.stderr
    assert "Warning: spec.meshConfig.enablePrometheusMerge: accepted, not applied by meshplane" in done.stderr
    assert "Warning: spec.values.global.network: accepted, not applied by meshplane" in done.stderr


def test_a_revision_renders_only_its_pilot_and_its_injector(default: Manifests) -> None:
    """``--revision canary``: Pilot as pilot-canary (selected by its revision, --revision passed)
    and the canary's injector calling Galley at /inject/rev/canary; everything else is shared with
    the default install, which keeps its names."""
    canary = objects("--revision", "canary")
    assert {(o["kind"], o["metadata"]["name"]) for o in canary} == {
        ("Deployment", "pilot-canary"),
        ("Service", "pilot-canary"),
        ("PodDisruptionBudget", "pilot-canary"),
        ("HorizontalPodAutoscaler", "pilot-canary"),
        ("MutatingWebhookConfiguration", "meshplane-sidecar-injector-canary"),
    }
    assert list(canary)[-1]["kind"] == "MutatingWebhookConfiguration"  # applied once Pilot is there
    for obj in canary:
        labels = obj["metadata"]["labels"]
        assert labels["istio.io/rev"] == "canary" and labels["operator.istio.io/component"] == "Pilot"
    (deploy,) = canary.of_kind("Deployment")
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "pilot",
        "istio.io/rev": "canary",
    }
    assert pod["metadata"]["labels"]["istio.io/rev"] == "canary"
    assert pod["spec"]["serviceAccountName"] == "pilot"  # shared: one SPIFFE ID and bus identity
    assert "--revision=canary" in pod["spec"]["containers"][0]["args"]
    (service,) = canary.of_kind("Service")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "pilot", "istio.io/rev": "canary"}
    (hpa,) = canary.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pilot-canary"
    (injector,) = canary.of_kind("MutatingWebhookConfiguration")
    assert [w["name"] for w in injector["webhooks"]] == [
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
    ]
    for webhook in injector["webhooks"]:
        assert webhook["clientConfig"]["service"]["path"] == "/inject/rev/canary"
        expressions = [
            *webhook["namespaceSelector"]["matchExpressions"],
            *webhook["objectSelector"]["matchExpressions"],
        ]
        assert {"key": "istio.io/rev", "operator": "In", "values": ["canary"]} in expressions
    # the default's Service and PDB select only the default's pods
    (default_service,) = [o for o in default.of_kind("Service") if o["metadata"]["name"] == "pilot"]
    assert default_service["spec"]["selector"]["istio.io/rev"] == "default"


def test_a_revision_without_pilot_and_a_shared_mesh_config_are_named() -> None:
    err = refused("--revision", "canary", "--set", "components.pilot.enabled=false")
    assert "components.pilot is disabled, so this revision would have nothing to install" in err
    done = generate("--revision", "canary", "--set", "meshConfig.accessLogFile=/dev/stdout")
    assert done.returncode == 0, done.stderr
    assert "spec.meshConfig: not applied by revision 'canary': the mesh config is shared" in done.stderr
