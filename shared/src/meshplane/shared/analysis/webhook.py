"""Webhook analyzers: Istio injector webhooks that overlap or name a missing Service (IST0139),
``image: auto`` workloads no injector selects (IST0146 Deployment, IST0147 Pod), and the webhooks of a
remote cluster pointing at an external control plane by a bad host (IST0163) or an IP (IST0164)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from meshplane.shared.analysis import messages as m
from meshplane.shared.analysis.context import Context, Resource, go_list, mappings, str_dict, strs

INJECTOR_LABEL = ("app", "sidecar-injector")
REVISION_LABEL = "istio.io/rev"
INJECT_LABEL = "sidecar.istio.io/inject"
DEFAULT_VALIDATOR = "istiod-default-validator"
VALIDATOR_PREFIX = "istio-validator"
INJECTOR_PREFIX = "istio-sidecar-injector"


def label_selector_matches(selector: object, labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (``matchLabels`` + ``matchExpressions``); None/absent matches all."""
    if not isinstance(selector, Mapping):
        return True
    if any(labels.get(k) != v for k, v in str_dict(selector.get("matchLabels")).items()):
        return False
    for expr in mappings(selector.get("matchExpressions")):
        key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
        values = strs(expr.get("values"))
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _injectors(ctx: Context) -> list[tuple[Resource, Mapping[str, Any]]]:
    """(configuration, webhook) for every webhook of an Istio injector MutatingWebhookConfiguration."""
    out = []
    for mwc in ctx.kind("MutatingWebhookConfiguration"):
        if mwc.str_map("labels").get(INJECTOR_LABEL[0]) == INJECTOR_LABEL[1]:
            out += [(mwc, hook) for hook in mappings(mwc.obj.get("webhooks"))]
    return out


def _selecting(
    injectors: list[tuple[Resource, Mapping[str, Any]]], ns: Mapping[str, str], pod: Mapping[str, str]
) -> list[str]:
    return [
        str(hook.get("name", mwc.name))
        for mwc, hook in injectors
        if label_selector_matches(hook.get("namespaceSelector"), ns)
        and label_selector_matches(hook.get("objectSelector"), pod)
    ]


def _revisions(mwc: Resource) -> set[str]:
    """The revisions a MutatingWebhookConfiguration serves: its ``istio.io/rev`` label and the values
    its webhooks' namespace and object selectors give that label."""
    revs = {mwc.str_map("labels")[REVISION_LABEL]} if REVISION_LABEL in mwc.str_map("labels") else set()
    for hook in mappings(mwc.obj.get("webhooks")):
        for field in ("namespaceSelector", "objectSelector"):
            sel = hook.get(field)
            if not isinstance(sel, Mapping):
                continue
            if REVISION_LABEL in str_dict(sel.get("matchLabels")):
                revs.add(str_dict(sel.get("matchLabels"))[REVISION_LABEL])
            for expr in mappings(sel.get("matchExpressions")):
                if expr.get("key") == REVISION_LABEL:
                    revs.update(strs(expr.get("values")))
    return revs


def check_injectors(ctx: Context) -> None:
    """IST0139 for Istio's injector webhooks (a configuration serving a revision, or with a webhook
    named ``*istio.io``): several select one combination of namespace and pod injection labels, or one
    names a Service that does not exist."""
    hooks: dict[str, tuple[Resource, Mapping[str, Any]]] = {}
    revisions: set[str] = set()
    for mwc in ctx.kind("MutatingWebhookConfiguration"):
        revs = _revisions(mwc)
        webhooks = mappings(mwc.obj.get("webhooks"))
        if not revs and not any(str(h.get("name", "")).endswith("istio.io") for h in webhooks):
            continue
        revisions |= revs
        for hook in webhooks:
            hooks[f"{mwc.name}/{hook.get('name', '')}"] = (mwc, hook)
    ns_variants: list[dict[str, str]] = [{}, {"istio-injection": "enabled"}, {"istio-injection": "disabled"}]
    pod_variants: list[dict[str, str]] = [{}, {INJECT_LABEL: "true"}, {INJECT_LABEL: "false"}]
    for rev in sorted(revisions):
        ns_variants += [{**v, REVISION_LABEL: rev} for v in ns_variants[:3]]
        pod_variants += [{**v, REVISION_LABEL: rev} for v in pod_variants[:3]]
    for ns in ns_variants:
        for pod in pod_variants:
            matches = sorted(
                key
                for key, (_, hook) in hooks.items()
                if label_selector_matches(hook.get("namespaceSelector"), ns)
                and label_selector_matches(hook.get("objectSelector"), pod)
            )
            if len(matches) < 2:
                continue
            for key in matches:
                ctx.report(
                    m.INVALID_WEBHOOK,
                    hooks[key][0],
                    f"Webhook overlaps with others: {go_list(k for k in matches if k != key)}. "
                    "This may cause injection to occur twice.",
                )
    for mwc, hook in hooks.values():
        client = hook.get("clientConfig")
        svc = client.get("service") if isinstance(client, Mapping) else None
        if (
            isinstance(svc, Mapping)
            and ctx.find("Service", str(svc.get("namespace", "")), str(svc.get("name", ""))) is None
        ):
            ctx.report(
                m.INVALID_WEBHOOK,
                mwc,
                "Injector refers to a control plane service that does not exist: "
                f"{svc.get('namespace', '')}/{svc.get('name', '')}.",
            )


def _template(r: Resource) -> tuple[Mapping[str, str], list[Mapping[str, Any]]]:
    if r.kind == "Pod":
        return r.str_map("labels"), mappings(r.spec.get("containers"))
    template = r.spec.get("template")
    template = template if isinstance(template, Mapping) else {}
    md, spec = template.get("metadata"), template.get("spec")
    labels = str_dict(md.get("labels")) if isinstance(md, Mapping) else {}
    return labels, mappings(spec.get("containers")) if isinstance(spec, Mapping) else []


def check_image_auto(ctx: Context) -> None:
    """IST0146 / IST0147: ``image: auto`` on a Deployment / Pod that no injector webhook selects."""
    injectors = _injectors(ctx)
    for r in [*ctx.kind("Deployment"), *ctx.kind("Pod")]:
        labels, containers = _template(r)
        if not any(c.get("image") == "auto" for c in containers):
            continue
        if _selecting(injectors, ctx.namespace_labels(r.namespace), labels):
            continue
        mtype = (
            m.IMAGE_AUTO_WITHOUT_INJECTION_ERROR
            if r.kind == "Pod"
            else m.IMAGE_AUTO_WITHOUT_INJECTION_WARNING
        )
        ctx.report(
            mtype,
            r,
            f"{r.kind} {r.name} contains `image: auto` but does not match any Istio injection webhook "
            "selectors.",
        )


def _lint_url(ctx: Context, r: Resource, hook: Mapping[str, Any]) -> None:
    """IST0163 for a webhook with neither a URL nor a Service (or a URL that does not parse), IST0164
    for a URL whose host is an IP address (istioctl's checks)."""
    name = str(hook.get("name", r.name))
    client = hook.get("clientConfig")
    client = client if isinstance(client, Mapping) else {}
    url = client.get("url")
    if url is None:
        if client.get("service") is None:
            ctx.report(
                m.INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
                r,
                f"The hostname () that was provided for the webhook ({name}) to reach the ingress gateway "
                "on the external control plane cluster is blank. Traffic may not flow properly.",
            )
        return
    try:
        host = urlsplit(str(url)).hostname or ""
    except ValueError:
        ctx.report(
            m.INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
            r,
            f"The hostname ({url}) that was provided for the webhook ({name}) to reach the ingress gateway "
            "on the external control plane cluster was provided in an invalid format. Traffic may not flow "
            "properly.",
        )
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    ctx.report(
        m.EXTERNAL_CONTROL_PLANE_ADDRESS_IS_IP,
        r,
        f"The address ({url}) that was provided for the webhook ({name}) to reach the ingress gateway on "
        "the external control plane cluster is an IP address. This is not recommended for a production "
        "environment.",
    )


def check_external_control_plane(ctx: Context) -> None:
    """IST0163 / IST0164 for the webhooks of Istio's validating (``istiod-default-validator``,
    ``istio-validator*``) and injecting (``istio-sidecar-injector*``) webhook configurations."""
    for r in ctx.kind("ValidatingWebhookConfiguration"):
        if r.name == DEFAULT_VALIDATOR or r.name.startswith(VALIDATOR_PREFIX):
            for hook in mappings(r.obj.get("webhooks")):
                _lint_url(ctx, r, hook)
    for r in ctx.kind("MutatingWebhookConfiguration"):
        if r.name.startswith(INJECTOR_PREFIX):
            for hook in mappings(r.obj.get("webhooks")):
                _lint_url(ctx, r, hook)
