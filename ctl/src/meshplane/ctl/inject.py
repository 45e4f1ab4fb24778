"""`meshctl kube-inject`: add the meshplane sidecar to Kubernetes workloads, as Istio's injector does.

Reads YAML (``-f FILE`` or ``-`` for stdin), injects every pod template it finds (Pod,
Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) and writes
all documents back, other kinds unchanged. Like Istio:

* a pod opted out (``sidecar.istio.io/inject: "false"`` as annotation or label), a pod that is
  already injected (``sidecar.istio.io/status``) and a ``hostNetwork`` pod are left alone;
* the sidecar container is ``istio-proxy`` (Envoy, bootstrapped by ``meshctl bootstrap`` against
  Pilot, with certificates from the node agent DaemonSet's SDS socket — a hostPath directory —
  asked for with the pod's projected service-account token, audience ``istio-ca``, mounted at
  ``/var/run/secrets/tokens/istio-token`` as Istio's injector does);
* the pod gets ``sidecar.istio.io/status`` (what was added), ``kubectl.kubernetes.io/default-container``
  and the labels ``security.istio.io/tlsMode: istio``, ``service.istio.io/canonical-name`` and
  ``service.istio.io/canonical-revision``.

Traffic capture is done by the meshplane CNI plugin, so no privileged ``istio-init`` container
is added.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from typing import Any

import yaml

from meshplane.ctl.errors import EXIT_USAGE, error
from meshplane.shared.version import __version__

PROXY_IMAGE = f"meshplane/proxy:{__version__}"
STATUS_ANNOTATION = "sidecar.istio.io/status"
INJECT_ANNOTATION = "sidecar.istio.io/inject"
SDS_DIR = "/var/run/secrets/workload-spiffe-uds"
#: Where the node agent DaemonSet serves SDS on the host (k8s/base/node-agent).
HOST_SDS_DIR = "/var/run/meshplane/workload-spiffe-uds"
TOKEN_DIR = "/var/run/secrets/tokens"
TOKEN_AUDIENCE = "istio-ca"

Obj = dict[str, Any]


class InjectError(Exception):
    """A document that cannot be injected, with where it is."""


def pod_templates(obj: Obj) -> Iterator[Obj]:
    """Yield the pod (metadata + spec holder) inside a workload object, if any."""
    kind = obj.get("kind")
    spec = obj.get("spec")
    if kind == "Pod":
        yield obj
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}:
        if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
            yield spec["template"]
    elif kind == "CronJob" and isinstance(spec, dict):
        job = spec.get("jobTemplate", {}).get("spec", {})
        if isinstance(job, dict) and isinstance(job.get("template"), dict):
            yield job["template"]


def _truthy_false(value: object) -> bool:
    return str(value).lower() in {"false", "no", "n", "0", "off"}


def should_inject(pod: Obj) -> bool:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    if _truthy_false(annotations.get(INJECT_ANNOTATION, "true")) or _truthy_false(
        labels.get(INJECT_ANNOTATION, "true")
    ):
        return False
    if STATUS_ANNOTATION in annotations:
        return False
    return not spec.get("hostNetwork")


def _proxy_container(workload: str, pilot: str, ca: str) -> Obj:
    script = (
        "meshctl bootstrap --type sidecar "
        '--node-id "sidecar~${INSTANCE_IP}~${POD_NAME}.${POD_NAMESPACE}~${POD_NAMESPACE}.svc.cluster.local" '
        f"--pilot {pilot} --sds-socket {SDS_DIR}/socket --sds-token-path {TOKEN_DIR}/istio-token "
        "--admin 127.0.0.1:15000 "
        '--namespace "${POD_NAMESPACE}" --service-account "${SERVICE_ACCOUNT}" --ip "${INSTANCE_IP}" '
        '--labels "$(cat /etc/istio/pod/labels | tr -d \'"\' | paste -sd, -)" '
        "-o /etc/istio/proxy/envoy.yaml && exec envoy -c /etc/istio/proxy/envoy.yaml --concurrency 2"
    )

    def field_env(name: str, path: str) -> Obj:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    return {
        "name": "istio-proxy",
        "image": PROXY_IMAGE,
        "command": ["/bin/sh", "-c", script],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("INSTANCE_IP", "status.podIP"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            {"name": "CA_ADDR", "value": ca},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        ],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 15000}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "securityContext": {
            "runAsUser": 1337,
            "runAsGroup": 1337,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": SDS_DIR},
            {"name": "istio-token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        ],
    }


VOLUMES: list[Obj] = [
    {"name": "workload-socket", "hostPath": {"path": HOST_SDS_DIR, "type": "Directory"}},
    {
        "name": "istio-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": TOKEN_AUDIENCE,
                        "expirationSeconds": 43200,
                        "path": "istio-token",
                    }
                }
            ]
        },
    },
    {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
    {
        "name": "istio-podinfo",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            ]
        },
    },
]


def inject_pod(pod: Obj, workload: str, pilot: str, ca: str) -> None:
    """Inject one pod template in place (caller checked :func:`should_inject`)."""
    meta = pod.setdefault("metadata", {})
    spec = pod.setdefault("spec", {})
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InjectError("pod spec has no containers")
    if any(isinstance(c, dict) and c.get("name") == "istio-proxy" for c in containers):
        raise InjectError("pod already has a container named istio-proxy")
    app = str(containers[0].get("name", "")) if isinstance(containers[0], dict) else ""
    containers.append(_proxy_container(workload, pilot, ca))
    volumes = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes if isinstance(v, dict)}
    volumes.extend(copy.deepcopy(v) for v in VOLUMES if v["name"] not in taken)
    annotations = meta.setdefault("annotations", {})
    labels = meta.setdefault("labels", {})
    annotations[STATUS_ANNOTATION] = json.dumps(
        {
            "initContainers": None,
            "containers": ["istio-proxy"],
            "volumes": [v["name"] for v in VOLUMES],
            "imagePullSecrets": None,
            "revision": "default",
        },
        separators=(",", ":"),
    )
    if app:
        annotations.setdefault("kubectl.kubernetes.io/default-container", app)
        annotations.setdefault("kubectl.kubernetes.io/default-logs-container", app)
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name", str(labels.get("app") or workload))
    labels.setdefault("service.istio.io/canonical-revision", str(labels.get("version") or "latest"))


def inject_documents(text: str, pilot: str, ca: str) -> str:
    """Inject every workload in a multi-document YAML text; other documents pass through."""
    out: list[str] = []
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InjectError(f"document {index}: expected a mapping, got {type(doc).__name__}")
        name = str((doc.get("metadata") or {}).get("name", ""))
        for pod in pod_templates(doc):
            if should_inject(pod):
                try:
                    inject_pod(pod, name, pilot, ca)
                except InjectError as exc:
                    raise InjectError(f"document {index} ({doc.get('kind')} {name}): {exc}") from exc
        out.append(yaml.safe_dump(doc, sort_keys=False))
    return "---\n".join(out)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kube-inject", help="add the sidecar to Kubernetes workload YAML")
    p.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--pilot", default="pilot.meshplane-system.svc:15010", help="Pilot's xDS address")
    p.add_argument("--ca", default="citadel.meshplane-system.svc:8060", help="Citadel's address")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.filename == "-":
            text = sys.stdin.read()
        else:
            with open(args.filename, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        error("kube-inject", f"cannot read {args.filename}: {exc.strerror}")
        return EXIT_USAGE
    try:
        result = inject_documents(text, args.pilot, args.ca)
    except yaml.YAMLError as exc:
        error("kube-inject", f"{args.filename}: not valid YAML: {exc}")
        return EXIT_USAGE
    except InjectError as exc:
        error("kube-inject", f"{args.filename}: {exc}")
        return EXIT_USAGE
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(result)
    else:
        sys.stdout.write(result)
    return 0
