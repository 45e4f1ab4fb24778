"""meshctl kube-inject adds the sidecar the way Istio's injector does, and only where it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshplane.ctl.main import main

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - {name: reviews, image: reviews:1, ports: [{containerPort: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}
"""


def run_inject(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    src = tmp_path / "in.yaml"
    src.write_text(text)
    code = main(["kube-inject", "-f", str(src)])
    out, err = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(out) if d] if code == 0 else []
    return code, docs, err


def test_deployment_gets_sidecar_and_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, docs, _ = run_inject(tmp_path, DEPLOYMENT, capsys)
    assert code == 0
    deployment, service = docs
    pod = deployment["spec"]["template"]
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["reviews", "istio-proxy"]
    proxy = pod["spec"]["containers"][1]
    assert proxy["securityContext"]["runAsUser"] == 1337
    status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["containers"] == ["istio-proxy"] and status["initContainers"] == ["istio-validation"]
    (validation,) = pod["spec"]["initContainers"]
    assert validation["name"] == "istio-validation" and validation["command"] == [
        "meshctl",
        "capture-validate",
    ]
    assert validation["securityContext"]["runAsUser"] == 1337
    assert validation["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # Istio's probes: the health port's /healthz/ready, served by the bootstrap's health listener
    ready = {"httpGet": {"path": "/healthz/ready", "port": 15021}}
    assert proxy["readinessProbe"] == {
        **ready,
        "initialDelaySeconds": 0,
        "periodSeconds": 15,
        "timeoutSeconds": 3,
        "failureThreshold": 4,
    }
    assert proxy["startupProbe"] == {
        **ready,
        "periodSeconds": 1,
        "timeoutSeconds": 3,
        "failureThreshold": 600,
    }
    assert "--health-port 15021" in proxy["command"][2]
    assert "--stats-port 15090" in proxy["command"][2]  # the declared http-envoy-prom port serves
    assert pod["metadata"]["annotations"]["istio.io/rev"] == "default"
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "reviews"
    labels = pod["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert (labels["service.istio.io/canonical-name"], labels["service.istio.io/canonical-revision"]) == (
        "reviews",
        "v1",
    )
    assert "sidecar~${INSTANCE_IP}~${POD_NAME}.${POD_NAMESPACE}" in proxy["command"][2]
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {
        "istio-envoy",
        "istio-podinfo",
        "workload-socket",
        "istio-token",
    }
    assert service["kind"] == "Service" and "template" not in service["spec"]


def test_sds_socket_from_node_agent_host_dir_and_projected_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, docs, _ = run_inject(tmp_path, DEPLOYMENT, capsys)
    spec = docs[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    # the node agent DaemonSet's host directory, not a CSI driver that does not exist
    assert volumes["workload-socket"] == {
        "name": "workload-socket",
        "hostPath": {"path": "/var/run/meshplane/workload-spiffe-uds", "type": "Directory"},
    }
    (source,) = volumes["istio-token"]["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "audience": "istio-ca",
        "expirationSeconds": 43200,
        "path": "istio-token",
    }
    proxy = spec["containers"][1]
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert mounts["workload-socket"] == "/var/run/secrets/workload-spiffe-uds"
    assert mounts["istio-token"] == "/var/run/secrets/tokens"
    # the bootstrap asks Pilot for SDS carrying the mounted token, over the mounted socket
    script = proxy["command"][2]
    assert "--sds-token-path /var/run/secrets/tokens/istio-token" in script
    assert "--sds-socket /var/run/secrets/workload-spiffe-uds/socket" in script
    assert "csi" not in json.dumps(spec)


def test_injection_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, docs, _ = run_inject(tmp_path, DEPLOYMENT, capsys)
    again = "---\n".join(yaml.safe_dump(d) for d in docs)
    code, docs2, _ = run_inject(tmp_path, again, capsys)
    assert code == 0
    assert [c["name"] for c in docs2[0]["spec"]["template"]["spec"]["containers"]] == [
        "reviews",
        "istio-proxy",
    ]


@pytest.mark.parametrize(
    "meta",
    [
        {"annotations": {"sidecar.istio.io/inject": "false"}},
        {"labels": {"sidecar.istio.io/inject": "false"}},
    ],
)
def test_opted_out_pod_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: dict) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", **meta},
        "spec": {"containers": [{"name": "a"}]},
    }
    code, docs, _ = run_inject(tmp_path, yaml.safe_dump(pod), capsys)
    assert code == 0 and [c["name"] for c in docs[0]["spec"]["containers"]] == ["a"]


def test_host_network_pod_and_cronjob(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: node-thing}
spec: {hostNetwork: true, containers: [{name: a}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: job}]}
"""
    code, docs, _ = run_inject(tmp_path, text, capsys)
    assert code == 0
    assert [c["name"] for c in docs[0]["spec"]["containers"]] == ["a"]
    job_pod = docs[1]["spec"]["jobTemplate"]["spec"]["template"]
    assert [c["name"] for c in job_pod["spec"]["containers"]] == ["job", "istio-proxy"]


def test_bad_input_gives_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_inject(tmp_path, "kind: Pod\nspec: [unclosed", capsys)
    assert code == 2 and "not valid YAML" in err and "Traceback" not in err
    code, _, err = run_inject(tmp_path, "- just\n- a list\n", capsys)
    assert code == 2 and "document 0" in err
    code, _, err = run_inject(tmp_path, "kind: Pod\nmetadata: {name: x}\nspec: {}\n", capsys)
    assert code == 2 and "no containers" in err and "Pod x" in err
    assert main(["kube-inject", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_without_cni_or_capture_no_validation_container(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(DEPLOYMENT)
    assert main(["kube-inject", "-f", str(src), "--cni", "false"]) == 0
    pod = next(yaml.safe_load_all(capsys.readouterr().out))["spec"]["template"]
    assert "initContainers" not in pod["spec"]
    assert json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])["initContainers"] is None
    none = DEPLOYMENT.replace(
        "labels: {app: reviews, version: v1}", "annotations: {sidecar.istio.io/interceptionMode: NONE}"
    )
    code, docs, _ = run_inject(tmp_path, none, capsys)
    assert code == 0 and "initContainers" not in docs[0]["spec"]["template"]["spec"]


def test_istio_annotations_shape_the_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    annotations = {
        "sidecar.istio.io/logLevel": "debug",
        "sidecar.istio.io/userVolume": json.dumps({"certs": {"secret": {"secretName": "extra-certs"}}}),
        "sidecar.istio.io/userVolumeMount": json.dumps(
            {"certs": {"mountPath": "/etc/extra", "readOnly": True}}
        ),
        "sidecar.istio.io/proxyCPU": "50m",
        "sidecar.istio.io/proxyMemoryLimit": "256Mi",
        "readiness.status.sidecar.istio.io/periodSeconds": "5",
        "readiness.status.sidecar.istio.io/failureThreshold": "9",
    }
    text = DEPLOYMENT.replace(
        "labels: {app: reviews, version: v1}", f"annotations: {json.dumps(annotations)}"
    )
    code, docs, _ = run_inject(tmp_path, text, capsys)
    assert code == 0
    proxy = docs[0]["spec"]["template"]["spec"]["containers"][1]
    assert proxy["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "256Mi"},
    }
    assert (proxy["readinessProbe"]["periodSeconds"], proxy["readinessProbe"]["failureThreshold"]) == (5, 9)
    assert proxy["command"][2].endswith("--concurrency 2 -l debug")
    assert proxy["volumeMounts"][-1] == {"name": "certs", "mountPath": "/etc/extra", "readOnly": True}
    volumes = docs[0]["spec"]["template"]["spec"]["volumes"]
    assert volumes[-1] == {"secret": {"secretName": "extra-certs"}, "name": "certs"}
    no_status = DEPLOYMENT.replace(
        "labels: {app: reviews, version: v1}", "annotations: {status.sidecar.istio.io/port: '0'}"
    )
    code, docs, _ = run_inject(tmp_path, no_status, capsys)
    proxy = docs[0]["spec"]["template"]["spec"]["containers"][1]
    assert "readinessProbe" not in proxy and "startupProbe" not in proxy


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        ("sidecar.istio.io/interceptionMode", "MAGIC", "expected one of REDIRECT, TPROXY, NONE"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "80,http", "'http' is not a port number 0..65535"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,nope", "'nope' is not a CIDR"),
        ("sidecar.istio.io/proxyMemory", "lots", "expected a Kubernetes quantity such as 100m or 128Mi"),
        ("proxy.istio.io/config", "[concurrency]", "expected a ProxyConfig mapping, got list"),
        (
            "sidecar.istio.io/logLevel",
            "loud",
            "expected one of trace, debug, info, warning, error, critical, off",
        ),
        ("sidecar.istio.io/userVolume", "[]", "expected a JSON object of name -> object"),
        (
            "inject.istio.io/templates",
            "sidecar,grpc-agent",
            "requested template 'grpc-agent' not found; have sidecar",
        ),
    ],
)
def test_a_bad_injection_annotation_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], annotation: str, value: str, problem: str
) -> None:
    text = DEPLOYMENT.replace(
        "labels: {app: reviews, version: v1}", f"annotations: {{{annotation}: '{value}'}}"
    )
    code, _, err = run_inject(tmp_path, text, capsys)
    assert code == 2
    assert err == (
        f"meshctl kube-inject: {tmp_path / 'in.yaml'}: document 0 (Deployment reviews-v1): "
        f"annotation {annotation}={value!r} is invalid: {problem}\n"
    )


def test_mesh_config_default_config_and_the_annotation_make_the_proxy_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``istioctl kube-inject --meshConfigFile``: defaultConfig below the pod's annotation; the
    annotation's fields meshplane does not apply are warned about on stderr."""
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("defaultConfig: {concurrency: 4, drainDuration: 10s}\n")
    annotated = DEPLOYMENT.replace(
        "metadata: {labels: {app: reviews, version: v1}}",
        "metadata:\n      labels: {app: reviews, version: v1}\n"
        '      annotations: {proxy.istio.io/config: "concurrency: 3\\ntracing: {sampling: 1}"}',
    )
    src = tmp_path / "in.yaml"
    src.write_text(annotated)
    assert main(["kube-inject", "-f", str(src), "--mesh-config", str(mesh)]) == 0
    out, err = capsys.readouterr()
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    (proxy,) = (c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy")
    assert "--concurrency 3 --drain-time-s 10 " in proxy["command"][2]
    assert "accepted, not applied by meshplane: proxy.istio.io/config tracing" in err
    mesh.write_text("defaultConfig: {concurrency: -4}\n")
    with pytest.raises(SystemExit) as exited:  # a usage error, as for every flag
        main(["kube-inject", "-f", str(src), "--mesh-config", str(mesh)])
    assert exited.value.code == 2
    assert "defaultConfig: concurrency: expected a whole number >= 0" in capsys.readouterr().err
