"""From an install resource to Kubernetes objects, rendered from the manifests in ``k8s/``.

There is one source of manifests: ``k8s/base`` (the control plane and the bus) and ``k8s/gateway``
(one gateway), read by the same kustomize renderer as ``kubectl apply -k``. The install resource
chooses and adjusts them:

* components: an object belongs to the component of the ``k8s/base`` directory it is read from
  (``pilot/``, ``galley/``, ``citadel/`` and ``node-agent/`` -> Citadel, ``cni/``; the rest is
  ``Base``: namespace, CRDs, mesh config, the NATS bus, NetworkPolicies); a disabled component's
  objects are left out;
* ``k8s``: replicas, resources, HPA bounds, node selector, tolerations, env, pod annotations and
  image pull policy of the component's workloads;
* ``hub``/``tag`` (spec, ``values.global`` or per component): the meshplane images;
* ``meshConfig``: merged over the base's ``istio`` ConfigMap and checked by the same parser the
  services use (fields meshplane does not apply become warnings);
* ``values.global.istioNamespace``: the control plane's namespace;
* each enabled gateway: ``k8s/gateway`` renamed and moved to its namespace, with a copy of the
  mesh config.

A revision other than ``default`` renders only its own parts (Pilot ``pilot-<rev>`` and its
sidecar injector; :mod:`.revision`): the rest is shared with the default install.

Every object carries Istio's install labels (``operator.istio.io/component``,
``install.operator.istio.io/owning-resource``, and ``istio.io/rev`` on all but namespaces), by
which uninstall and upgrade find it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl.install import kustomize
from meshplane.ctl.install import revision as revisioned
from meshplane.ctl.install.setflags import merge
from meshplane.ctl.install.spec import Component, GatewayComponent, InstallError, IstioOperator, K8sSpec
from meshplane.shared.meshconfig import MeshConfigError, parse_mesh_config
from meshplane.shared.version import __version__

Manifest = dict[str, Any]

BASE_NAMESPACE = "meshplane-system"
GATEWAY_NAME = "istio-ingressgateway"
GATEWAY_NAMESPACE = "istio-ingress"
DEFAULT_HUB = "meshplane"
#: The images meshplane builds (docker/*.Dockerfile); others (nats) keep their own.
OWN_IMAGES = frozenset({"pilot", "galley", "citadel", "cni", "proxy"})
_DIR_COMPONENT = {
    "pilot": "Pilot",
    "galley": "Galley",
    "citadel": "Citadel",
    "node-agent": "Citadel",
    "cni": "Cni",
}
_WORKLOADS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})

LABEL_COMPONENT = "operator.istio.io/component"
LABEL_MANAGED = "operator.istio.io/managed"
LABEL_VERSION = "operator.istio.io/version"
LABEL_OWNER = "install.operator.istio.io/owning-resource"
LABEL_OWNER_NS = "install.operator.istio.io/owning-resource-namespace"
LABEL_REV = "istio.io/rev"


@dataclass
class Rendered:
    """What an install applies, in order, and what the user must be told."""

    objects: list[Manifest]
    warnings: list[str] = field(default_factory=list)


def render(manifests: Path, op: IstioOperator) -> Rendered:
    spec = op.spec
    revision = spec.revision or "default"
    comps = spec.components
    glob = spec.values.global_ if spec.values else None
    namespace = (glob.istio_namespace if glob else None) or op.metadata.namespace or BASE_NAMESPACE
    hub = spec.hub or (glob.hub if glob else None)
    tag = spec.tag or (glob.tag if glob else None)
    pull = glob.image_pull_policy if glob else None
    out = Rendered([])
    if glob is not None:
        unapplied = {"network": glob.network, "meshID": glob.mesh_id, "multiCluster": glob.multi_cluster,
                     "logging": glob.logging}  # fmt: skip
        out.warnings += [
            f"spec.values.global.{name}: accepted, not applied by meshplane"
            for name, v in unapplied.items()
            if v
        ]

    by_name: dict[str, Component | None] = {
        "Base": comps.base if comps else None,
        "Pilot": comps.pilot if comps else None,
        "Galley": comps.galley if comps else None,
        "Citadel": comps.citadel if comps else None,
        "Cni": comps.cni if comps else None,
    }
    for source, obj in kustomize.render_sources(manifests / "base"):
        name = _component_of(source, manifests / "base")
        comp = by_name[name]
        if comp is None or not comp.enabled:
            continue
        _adjust(obj, comp, name, hub or comp.hub, tag or comp.tag, pull)
        out.objects.append(obj)
    mesh = _mesh_config(out, spec.mesh_config)
    gateways = [*(comps.ingress_gateways or []), *(comps.egress_gateways or [])] if comps else []
    ingress = {id(g) for g in (comps.ingress_gateways or [])} if comps else set()
    for gw in gateways:
        if gw.enabled:
            kind = "IngressGateways" if id(gw) in ingress else "EgressGateways"
            out.objects.extend(_gateway(manifests, gw, kind, mesh, hub, tag, pull))
    if revision != "default":
        out.objects = _revision_only(out, spec.mesh_config is not None, revision)
    if namespace != BASE_NAMESPACE:
        out.objects = [_rename(o, BASE_NAMESPACE, namespace) for o in out.objects]
    owner = op.metadata.name or "installed-state"
    for obj in out.objects:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault(LABEL_COMPONENT, "Base")
        labels.update(
            {
                LABEL_MANAGED: "Reconcile",
                LABEL_VERSION: __version__,
                LABEL_OWNER: owner,
                LABEL_OWNER_NS: namespace,
            }
        )
        # On a Namespace, istio.io/rev would enrol its pods in that revision's injection: the
        # control plane's own pods must never be injected.
        if obj["kind"] != "Namespace":
            labels[LABEL_REV] = revision
    return out


def _revision_only(out: Rendered, mesh_config: bool, revision: str) -> list[Manifest]:
    """A revision's own objects (:mod:`.revision`); what it shares is named, not duplicated."""
    objects = revisioned.select(out.objects, revision)
    if not objects:
        raise InstallError(
            f"revision {revision!r}: components.pilot is disabled, so this revision would have "
            "nothing to install (a revision is its Pilot and its injector)"
        )
    if mesh_config:
        out.warnings.append(
            f"spec.meshConfig: not applied by revision {revision!r}: the mesh config is shared by "
            "every revision (change it with the default revision's install)"
        )
    return objects


def _component_of(source: Path, base: Path) -> str:
    relative = source.resolve().relative_to(base.resolve())
    return _DIR_COMPONENT.get(relative.parts[0], "Base") if len(relative.parts) > 1 else "Base"


def _adjust(
    obj: Manifest, comp: Component, name: str, hub: str | None, tag: str | None, pull: str | None
) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {})[LABEL_COMPONENT] = name
    if obj["kind"] in _WORKLOADS:
        _workload(obj, comp.k8s, hub, tag, pull)
    elif obj["kind"] == "HorizontalPodAutoscaler" and comp.k8s and comp.k8s.hpa_spec:
        hpa = comp.k8s.hpa_spec
        if hpa.min_replicas is not None:
            obj["spec"]["minReplicas"] = hpa.min_replicas
        if hpa.max_replicas is not None:
            obj["spec"]["maxReplicas"] = hpa.max_replicas
        if hpa.metrics is not None:
            obj["spec"]["metrics"] = copy.deepcopy(hpa.metrics)


def _workload(obj: Manifest, k8s: K8sSpec | None, hub: str | None, tag: str | None, pull: str | None) -> None:
    pod = obj["spec"]["template"]
    containers = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    for container in containers:
        container["image"] = _image(container["image"], hub, tag)
        if pull or (k8s and k8s.image_pull_policy):
            container["imagePullPolicy"] = (k8s.image_pull_policy if k8s else None) or pull
    if k8s is None:
        return
    main = pod["spec"]["containers"][0]
    if k8s.replica_count is not None and obj["kind"] != "DaemonSet":
        obj["spec"]["replicas"] = k8s.replica_count
    if k8s.resources is not None:
        main["resources"] = k8s.resources.model_dump(by_alias=True, exclude_none=True)
    if k8s.node_selector is not None:
        pod["spec"]["nodeSelector"] = dict(k8s.node_selector)
    if k8s.tolerations is not None:
        pod["spec"]["tolerations"] = copy.deepcopy(k8s.tolerations)
    if k8s.pod_annotations:
        pod.setdefault("metadata", {}).setdefault("annotations", {}).update(k8s.pod_annotations)
    for env in k8s.env or []:
        entries = [e for e in main.setdefault("env", []) if e.get("name") != env.name]
        main["env"] = [*entries, env.model_dump(by_alias=True, exclude_none=True)]


def _image(image: str, hub: str | None, tag: str | None) -> str:
    repo, _, current = image.rpartition(":")
    owner, _, name = repo.rpartition("/")
    if owner != DEFAULT_HUB or name not in OWN_IMAGES:
        return image
    return f"{hub or owner}/{name}:{tag or current}"


def _mesh_config(out: Rendered, user: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``spec.meshConfig`` into the ``istio`` ConfigMap; return the merged MeshConfig."""
    cm = next((o for o in out.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "istio"), None)
    base = yaml.safe_load(cm["data"]["mesh"]) if cm else {}
    mesh = merge(base or {}, user or {})
    try:
        parsed = parse_mesh_config(yaml.safe_dump(mesh), "spec.meshConfig")
    except MeshConfigError as exc:
        raise InstallError(str(exc)) from None
    out.warnings.extend(
        f"spec.meshConfig.{name}: accepted, not applied by meshplane" for name in parsed.not_applied
    )
    if cm is not None:
        cm["data"]["mesh"] = yaml.safe_dump(mesh, sort_keys=False)
    return mesh


def _gateway(
    manifests: Path,
    gw: GatewayComponent,
    kind: str,
    mesh: dict[str, Any],
    hub: str | None,
    tag: str | None,
    pull: str | None,
) -> list[Manifest]:
    namespace = gw.namespace or GATEWAY_NAMESPACE
    role = "ingressgateway" if kind == "IngressGateways" else "egressgateway"
    objects: list[Manifest] = []
    for obj in kustomize.render(manifests / "gateway"):
        obj = _rename(obj, GATEWAY_NAME, gw.name)
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        else:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        obj["metadata"].setdefault("labels", {})[LABEL_COMPONENT] = kind
        _relabel(obj, role, gw.label or {})
        if obj["kind"] == "Service" and kind == "EgressGateways":
            obj["spec"]["type"] = "ClusterIP"
        if obj["kind"] in _WORKLOADS:
            _workload(obj, gw.k8s, hub or gw.hub, tag or gw.tag, pull)
        objects.append(obj)
    mesh_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": namespace, "labels": {LABEL_COMPONENT: kind}},
        "data": {"mesh": yaml.safe_dump(mesh, sort_keys=False)},
    }
    at = 1 if objects and objects[0]["kind"] == "Namespace" else 0
    objects.insert(at, mesh_cm)
    return objects


def _relabel(obj: Manifest, role: str, extra: dict[str, str]) -> None:
    """Istio's gateway labels (``istio: ingressgateway``) and the entry's ``label``, where pods are chosen."""

    def fix(labels: dict[str, str]) -> None:
        if "istio" in labels:
            labels["istio"] = role
            labels.update(extra)

    fix(obj["metadata"].get("labels", {}))
    spec = obj.get("spec", {})
    if obj["kind"] == "Service":
        fix(spec.get("selector", {}))
    if obj["kind"] in _WORKLOADS:
        fix(spec["selector"]["matchLabels"])
        fix(spec["template"]["metadata"]["labels"])


def _rename(obj: Any, old: str, new: str) -> Any:
    """Every string in ``obj`` with ``old`` (a name or namespace token) replaced by ``new``."""
    return _map_strings(obj, lambda s: s.replace(old, new))


def _map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {fn(k) if isinstance(k, str) else k: _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(v, fn) for v in obj]
    return obj


def installable_kinds(manifests: Path) -> set[tuple[str, str]]:
    """Every (apiVersion, kind) an install can make: what ``k8s/base`` and ``k8s/gateway`` hold."""
    objects = [*kustomize.render(manifests / "base"), *kustomize.render(manifests / "gateway")]
    return {(o["apiVersion"], o["kind"]) for o in objects}
