"""Injection analyzers: namespaces without an injection label (IST0102), injected by default
(IST0148) or with both kinds (IST0123), pods in injected namespaces without ``istio-proxy``
(IST0103) or running an older proxy image than the injector's (IST0158), and application
containers running as the proxy's UID 1337 (IST0144)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, go_list, mappings

#: Namespaces Istio's analyzers leave alone.
SYSTEM_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "istio-system", "local-path-storage"}
)
INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
PROXY = "istio-proxy"
INJECTOR_CONFIGMAP = "istio-sidecar-injector"
PROXY_UID = 1337


def _skipped(ctx: Context, namespace: str) -> bool:
    return namespace in SYSTEM_NAMESPACES or namespace == ctx.root_namespace


def enabled_by_default(ctx: Context) -> bool:
    """``sidecarInjectorWebhook.enableNamespacesByDefault`` in the injector ConfigMap's ``values``."""
    webhook = _injector_values(ctx).get("sidecarInjectorWebhook")
    return isinstance(webhook, Mapping) and webhook.get("enableNamespacesByDefault") is True


DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"


def _check_multiple_labels(ctx: Context, ns: Resource, labels: Mapping[str, str]) -> None:
    """IST0123: ``istio-injection`` together with ``istio.io/rev`` or a dataplane mode (or those two
    together); a namespace whose ``istio-injection`` is not ``enabled`` counts only that label."""
    found = [f"{INJECTION_LABEL}={labels[INJECTION_LABEL]}"] if INJECTION_LABEL in labels else []
    if labels.get(INJECTION_LABEL, "enabled") == "enabled":
        found += [f"{k}={labels[k]}" for k in (REVISION_LABEL, DATAPLANE_MODE_LABEL) if k in labels]
    if len(found) > 1:
        ctx.report(
            m.NAMESPACE_MULTIPLE_INJECTION_LABELS,
            ns,
            f"The namespace has more than one type of injection labels {go_list(found)}, which may lead "
            "to undefined behavior. Make sure only one injection label exists.",
        )


def check_namespaces(ctx: Context) -> None:
    """IST0102 (neither label; Info; IST0148 when injection is on by default) and IST0123 (several)."""
    by_default = enabled_by_default(ctx)
    for ns in ctx.kind("Namespace"):
        if _skipped(ctx, ns.name):
            continue
        labels = ns.str_map("labels")
        _check_multiple_labels(ctx, ns, labels)
        if labels.get(DATAPLANE_MODE_LABEL) == "ambient":
            continue
        if INJECTION_LABEL in labels or REVISION_LABEL in labels:
            continue
        if by_default:
            ctx.report(
                m.NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
                ns,
                "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault "
                "as true.",
            )
        else:
            ctx.report(
                m.NAMESPACE_NOT_INJECTED,
                ns,
                f"The namespace is not enabled for Istio injection. Run 'kubectl label namespace {ns.name} "
                f"istio-injection=enabled' to enable it, or 'kubectl label namespace {ns.name} "
                "istio-injection=disabled' to explicitly mark it as not needing injection.",
            )


def _injected_namespace(ctx: Context, namespace: str) -> bool:
    labels = ctx.namespace_labels(namespace)
    if labels.get(INJECTION_LABEL) == "disabled":
        return False
    if (
        INJECTION_LABEL not in labels
        and REVISION_LABEL not in labels
        and ctx.find("Namespace", "", namespace)
    ):
        return enabled_by_default(ctx)
    return labels.get(INJECTION_LABEL) == "enabled" or REVISION_LABEL in labels


def _containers(pod_spec: Mapping[str, Any], init: bool = False) -> list[Mapping[str, Any]]:
    out = mappings(pod_spec.get("containers"))
    return out + mappings(pod_spec.get("initContainers")) if init else out


def check_pods(ctx: Context) -> None:
    """IST0103: a pod in an injected namespace without the ``istio-proxy`` container."""
    for pod in ctx.kind("Pod"):
        if _skipped(ctx, pod.namespace) or not _injected_namespace(ctx, pod.namespace):
            continue
        opt_out = pod.str_map("labels").get("sidecar.istio.io/inject") or pod.str_map("annotations").get(
            "sidecar.istio.io/inject"
        )
        if opt_out == "false" or pod.spec.get("hostNetwork") is True:
            continue
        if any(c.get("name") == PROXY for c in _containers(pod.spec, init=True)):
            continue
        ctx.report(
            m.POD_MISSING_PROXY,
            pod,
            f"The pod {pod.namespace}/{pod.name} is missing the Istio proxy. This can often be resolved by "
            "restarting or redeploying the workload.",
        )


def _pod_spec(r: Resource) -> Mapping[str, Any]:
    if r.kind == "Pod":
        return r.spec
    template = r.spec.get("template")
    spec = template.get("spec") if isinstance(template, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _uid(holder: Mapping[str, Any]) -> object:
    sc = holder.get("securityContext")
    return sc.get("runAsUser") if isinstance(sc, Mapping) else None


def check_application_uid(ctx: Context) -> None:
    """IST0144: a pod or deployment whose application containers run as UID 1337."""
    for r in [*ctx.kind("Pod"), *ctx.kind("Deployment")]:
        if _skipped(ctx, r.namespace):
            continue
        spec = _pod_spec(r)
        apps = [c for c in _containers(spec) if c.get("name") != PROXY]
        if _uid(spec) == PROXY_UID or any(_uid(c) == PROXY_UID for c in apps):
            ctx.report(m.INVALID_APPLICATION_UID, r, "User ID (UID) 1337 is reserved for the sidecar proxy.")


def _injector_values(ctx: Context) -> Mapping[str, Any]:
    cm = ctx.find("ConfigMap", ctx.root_namespace, INJECTOR_CONFIGMAP)
    data = cm.obj.get("data") if cm else None
    text = data.get("values") if isinstance(data, Mapping) else None
    try:
        values = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return values if isinstance(values, Mapping) else {}


def injected_image(ctx: Context) -> str | None:
    """The proxy image the injector ConfigMap would inject now (``hub/image:tag``), if it says."""
    glob = _injector_values(ctx).get("global")
    if not isinstance(glob, Mapping):
        return None
    proxy = glob.get("proxy")
    image = str(proxy.get("image") or "proxyv2") if isinstance(proxy, Mapping) else "proxyv2"
    hub, tag = glob.get("hub"), glob.get("tag")
    if "/" in image:
        return image
    if not hub or not tag:
        return None
    return f"{hub}/{image}:{tag}"


def check_proxy_images(ctx: Context) -> None:
    """IST0158: running ``istio-proxy`` images differ from what the injector would inject now."""
    expected = injected_image(ctx)
    if expected is None:
        return
    stale: dict[str, list[str]] = {}
    for pod in ctx.kind("Pod"):
        if _skipped(ctx, pod.namespace) or not _injected_namespace(ctx, pod.namespace):
            continue
        images = [str(c.get("image")) for c in _containers(pod.spec, init=True) if c.get("name") == PROXY]
        if any(image != expected for image in images):
            stale.setdefault(pod.namespace, []).append(pod.name)
    for namespace, pods in sorted(stale.items()):
        ns = ctx.find("Namespace", "", namespace)
        if ns is not None:
            ctx.report(
                m.PODS_PROXY_IMAGE_MISMATCH,
                ns,
                "The Istio proxy images of the pods running in the namespace do not match the image defined "
                f"in the injection configuration (pod names: {go_list(sorted(pods))}). This often happens "
                "after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
            )
