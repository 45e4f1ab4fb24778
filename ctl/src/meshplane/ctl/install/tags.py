"""Revision tags (``meshctl tag``), as istioctl's: a stable name for a revision.

Namespaces are labelled with a tag (``istio.io/rev=prod``) rather than a revision; moving the tag
(``meshctl tag set prod --revision canary --overwrite``) moves every such namespace at its pods'
next restart, without relabelling. A tag is one MutatingWebhookConfiguration,
``meshplane-revision-tag-<tag>``, labelled ``istio.io/tag: <tag>`` and ``istio.io/rev: <revision>``,
with Istio's two ``rev.*`` webhooks selecting ``istio.io/rev=<tag>`` and calling what the
revision's own injector calls (its ``clientConfig`` with ``caBundle``, its ``rules``, failure and
reinvocation policies, copied). The tag ``default`` also gets the ``namespace.`` and ``object.``
webhooks, so ``istio-injection=enabled`` namespaces go to its revision; setting it first
deactivates the default revision's own injector (every selector becomes Istio's
``istio.io/deactivated: never-match``; it is not deleted).

The cluster's injectors are the MutatingWebhookConfigurations labelled ``app: sidecar-injector``:
a revision's own (without ``istio.io/tag``) and the tags'.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from meshplane.ctl.install.spec import InstallError

Manifest = dict[str, Any]

LABEL_TAG = "istio.io/tag"
LABEL_REV = "istio.io/rev"
INJECTOR_SELECTOR = "app=sidecar-injector"
TAG_PREFIX = "meshplane-revision-tag-"
DEFAULT = "default"
NEVER_MATCH: Manifest = {"matchLabels": {"istio.io/deactivated": "never-match"}}
MWC = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NOT_OPTED_OUT = {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}
_NO_INJECTION_LABEL = {"key": "istio-injection", "operator": "DoesNotExist"}
_NO_REV = {"key": LABEL_REV, "operator": "DoesNotExist"}


@dataclass
class Injectors:
    """The cluster's sidecar injectors: each revision's own, and each tag's."""

    revisions: dict[str, Manifest] = field(default_factory=dict)
    tags: dict[str, Manifest] = field(default_factory=dict)

    @classmethod
    def of(cls, configs: list[Manifest]) -> Injectors:
        found = cls()
        for config in configs:
            labels = config["metadata"].get("labels") or {}
            if LABEL_TAG in labels:
                found.tags[labels[LABEL_TAG]] = config
            elif LABEL_REV in labels:
                found.revisions[labels[LABEL_REV]] = config
        return found

    def revision_of(self, tag: str) -> str:
        return str(self.tags[tag]["metadata"]["labels"].get(LABEL_REV, ""))


def injectors(cluster: Any) -> Injectors:
    """The injectors of ``cluster`` (a :class:`meshplane.ctl.install.cluster.Cluster`)."""
    listed = cluster.resource(*MWC).get(label_selector=INJECTOR_SELECTOR)
    return Injectors.of([item.to_dict() for item in listed.items])


def check_name(what: str, value: str) -> None:
    if not _DNS_LABEL.match(value):
        raise InstallError(f"{what} {value!r} is not a DNS label (lower case letters, digits and '-')")


def tag_config(
    found: Injectors, tag: str, revision: str, *, overwrite: bool, generate: bool = False
) -> Manifest:
    """The tag's MutatingWebhookConfiguration; InstallError (Istio's messages) when the tag would
    shadow a revision, the revision has no injector, or the tag exists without ``overwrite``."""
    check_name("tag", tag)
    check_name("revision", revision)
    if tag in found.revisions and tag != DEFAULT and not generate:
        raise InstallError(
            f"cannot create revision tag {tag!r}: found existing control plane revision with same name"
        )
    canonical = found.revisions.get(revision)
    if canonical is None:
        known = ", ".join(sorted(found.revisions)) or "none"
        raise InstallError(
            f"cannot modify tag: cannot find MutatingWebhookConfiguration with revision {revision!r} "
            f"(revisions installed: {known})"
        )
    if tag in found.tags and not overwrite and not generate:
        raise InstallError(
            f"revision tag {tag!r} already exists (revision {found.revision_of(tag)!r}), and --overwrite "
            "is false"
        )
    template = next(
        (w for w in canonical.get("webhooks") or [] if w["name"].startswith("rev.")),
        None,
    )
    if template is None:
        raise InstallError(
            f"MutatingWebhookConfiguration {canonical['metadata']['name']} has no rev.* webhook"
        )
    mine = {"key": LABEL_REV, "operator": "In", "values": [tag]}
    webhooks = [
        _webhook(template, "rev.namespace", [mine, _NO_INJECTION_LABEL], [_NOT_OPTED_OUT]),
        _webhook(template, "rev.object", [_NO_REV, _NO_INJECTION_LABEL], [_NOT_OPTED_OUT, mine]),
    ]
    if tag == DEFAULT:
        enabled = {"key": "istio-injection", "operator": "In", "values": ["enabled"]}
        opted_in = {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]}
        webhooks += [
            _webhook(template, "namespace", [enabled], [_NOT_OPTED_OUT]),
            _webhook(template, "object", [_NO_INJECTION_LABEL, _NO_REV], [opted_in, _NO_REV]),
        ]
    return {
        "apiVersion": MWC[0],
        "kind": MWC[1],
        "metadata": {
            "name": TAG_PREFIX + tag,
            "labels": {
                LABEL_TAG: tag,
                LABEL_REV: revision,
                "app": "sidecar-injector",
                "app.kubernetes.io/part-of": "meshplane",
            },
        },
        "webhooks": webhooks,
    }


def _webhook(template: Manifest, prefix: str, namespace: list[Manifest], objects: list[Manifest]) -> Manifest:
    return {
        "name": f"{prefix}.sidecar-injector.istio.io",
        "admissionReviewVersions": list(template.get("admissionReviewVersions") or ["v1"]),
        "sideEffects": template.get("sideEffects", "None"),
        "failurePolicy": template.get("failurePolicy", "Fail"),
        "reinvocationPolicy": template.get("reinvocationPolicy", "Never"),
        "clientConfig": copy.deepcopy(template["clientConfig"]),
        "rules": copy.deepcopy(template["rules"]),
        "namespaceSelector": {"matchExpressions": copy.deepcopy(namespace)},
        "objectSelector": {"matchExpressions": copy.deepcopy(objects)},
    }


def deactivation(config: Manifest) -> list[Manifest]:
    """JSON Patch operations that make every webhook of ``config`` select nothing (Istio's
    DeactivateIstioInjectionWebhook); empty when it already does."""
    ops: list[Manifest] = []
    for index, webhook in enumerate(config.get("webhooks") or []):
        for key in ("namespaceSelector", "objectSelector"):
            if webhook.get(key) != NEVER_MATCH:
                ops.append({"op": "add", "path": f"/webhooks/{index}/{key}", "value": NEVER_MATCH})
    return ops


def rows(found: Injectors, namespaces: dict[str, list[str]]) -> list[dict[str, Any]]:
    """``meshctl tag list``: each tag, its revision and the namespaces labelled with it."""
    return [
        {"tag": tag, "revision": found.revision_of(tag), "namespaces": sorted(namespaces.get(tag, []))}
        for tag in sorted(found.tags)
    ]


def share_ca_bundle(objects: list[Manifest], found: Injectors, revision: str) -> None:
    """Before a revision's install: its injector calls the shared Galley, so it gets the CA the
    installed injectors already carry . InstallError when
    there is no installed control plane to share."""
    if not found.revisions:
        raise InstallError(
            f"revision {revision!r} shares Galley, the bus and Citadel with an installed control plane, "
            "and none is installed (no sidecar injector configuration found): run meshctl install "
            "without --revision first"
        )
    sources = [found.revisions.get(DEFAULT), *found.revisions.values()]
    bundle = next(
        (
            w["clientConfig"]["caBundle"]
            for config in sources
            if config
            for w in config.get("webhooks") or []
            if (w.get("clientConfig") or {}).get("caBundle")
        ),
        None,
    )
    if bundle is None:
        return  # Galley has not published its CA yet; it does so on every injector
    for obj in objects:
        if obj["kind"] == MWC[1]:
            for webhook in obj["webhooks"]:
                webhook["clientConfig"]["caBundle"] = bundle
