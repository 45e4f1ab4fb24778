"""`meshctl kube-inject`: add the meshplane sidecar to Kubernetes workloads, as Istio's injector does.

Reads YAML (``-f FILE`` or ``-`` for stdin), injects every pod template it finds (Pod,
Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) and writes
all documents back, other kinds unchanged. Which pods are injected and what they get is
``meshplane.shared.inject``, the implementation Galley's ``POST /inject`` webhook uses too: a pod
opted out (``sidecar.istio.io/inject: "false"``), already injected or on the host network is left
alone; the others get ``istio-proxy``, the ``istio-validation`` init container (capture is the
CNI plugin's; ``--cni=false`` leaves it out) and Istio's labels and annotations. The proxy's
ProxyConfig is ``--mesh-config``'s ``defaultConfig`` with each pod's ``proxy.istio.io/config`` on
top (as ``istioctl kube-inject --meshConfigFile``); fields meshplane does not apply are warned about.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import yaml

from meshplane.ctl.errors import EXIT_USAGE, error
from meshplane.shared.inject import InjectError, InjectorConfig, inject_pod, injection_required
from meshplane.shared.inject.config import PROXY_IMAGE
from meshplane.shared.inject.proxyconfig import warnings
from meshplane.shared.meshconfig import add_mesh_config_flag, mesh_config_from_args
from meshplane.shared.proxyconfig import ProxyConfigs

__all__ = ["PROXY_IMAGE", "inject_documents", "pod_templates"]

Obj = dict[str, Any]


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


def inject_documents(text: str, config: InjectorConfig, proxy_configs: ProxyConfigs | None = None) -> str:
    """Inject every workload in a multi-document YAML text; other documents pass through."""
    out: list[str] = []
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InjectError(f"document {index}: expected a mapping, got {type(doc).__name__}")
        meta = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace") or "default")
        for pod in pod_templates(doc):
            if injection_required(pod, namespace, config):
                annotations = (pod.get("metadata") or {}).get("annotations") or {}
                for line in warnings(annotations) if isinstance(annotations, dict) else []:
                    print(f"Warning: {doc.get('kind')} {namespace}/{name}: {line}", file=sys.stderr)
                try:
                    inject_pod(pod, name, config, proxy_configs, namespace)
                except InjectError as exc:
                    raise InjectError(f"document {index} ({doc.get('kind')} {name}): {exc}") from exc
        out.append(yaml.safe_dump(doc, sort_keys=False))
    return "---\n".join(out)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kube-inject", help="add the sidecar to Kubernetes workload YAML")
    p.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    defaults = InjectorConfig()
    p.add_argument("--pilot", default=defaults.pilot, help="Pilot's xDS address")
    p.add_argument("--ca", default=defaults.ca, help="Citadel's address")
    p.add_argument("--image", default=PROXY_IMAGE, help="the proxy image")
    p.add_argument(
        "--cni",
        choices=("true", "false"),
        default="true",
        help="capture by the CNI plugin: add the istio-validation init container (default true)",
    )
    add_mesh_config_flag(p)
    p.set_defaults(func=run, parser=p)


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
        config = InjectorConfig(pilot=args.pilot, ca=args.ca, image=args.image, cni=args.cni == "true")
        mesh = mesh_config_from_args(args.parser, args.mesh_config)
        proxy_configs = ProxyConfigs.build(mesh.default_config, (), mesh.root_namespace)
        result = inject_documents(text, config, proxy_configs)
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
