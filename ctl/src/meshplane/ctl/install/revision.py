"""A revisioned control plane (``spec.revision``, ``--revision canary``): only its own parts.

Galley is shared, not per revision: one Galley (with the bus, Citadel, CNI, the CRDs and the
gateways, the revision-independent part, as Istio's base chart) reads and validates config once
and publishes it with its labels, and each revision's Pilot (``--revision R``) reads unlabelled
config and config labelled ``istio.io/rev: R``. A revision is therefore:

* Pilot as ``pilot-<R>``: Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler,
  their pods labelled ``istio.io/rev: R`` and selected by it (next to the default's, which keeps
  its names). It runs as the shared ServiceAccount ``pilot`` with the shared bus identity
  ``meshplane-bus-pilot``: proxies verify every revision's Pilot by the same SPIFFE ID, and the
  bus grants Pilot's permissions once;
* its sidecar injector, MutatingWebhookConfiguration ``meshplane-sidecar-injector-<R>``: Istio's
  two ``rev.*`` webhooks selecting namespaces labelled ``istio.io/rev=R`` (and pods so labelled in
  unlabelled namespaces), calling the shared Galley at ``/inject/rev/<R>``.

Both carry the component label ``Pilot`` (as Istio's injector) and ``istio.io/rev: R``, by which
``meshctl uninstall --revision R`` finds exactly them.
"""

from __future__ import annotations

import copy
from typing import Any

Manifest = dict[str, Any]

PILOT = "pilot"
INJECTOR = "meshplane-sidecar-injector"
REV = "istio.io/rev"
#: the webhooks a revision's injector has (the default's two others follow istio-injection=enabled)
REVISION_WEBHOOKS = ("rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io")
_PILOT_KINDS = frozenset({"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"})


def injector_name(revision: str) -> str:
    """The revision's MutatingWebhookConfiguration (the default keeps the bare name)."""
    return INJECTOR if revision == "default" else f"{INJECTOR}-{revision}"


def injection_path(revision: str) -> str:
    return "/inject" if revision == "default" else f"/inject/rev/{revision}"


def select(objects: list[Manifest], revision: str) -> list[Manifest]:
    """From the default's objects (rendered as usual), the revision's: Pilot's, then the injector
    (applied last, so pods are sent to a Pilot that exists)."""
    pilot: list[Manifest] = []
    injector: list[Manifest] = []
    for obj in objects:
        name, kind = obj["metadata"].get("name"), obj["kind"]
        component = obj["metadata"].get("labels", {}).get("operator.istio.io/component")
        if component == "Pilot" and kind in _PILOT_KINDS and name == PILOT:
            pilot.append(_pilot(copy.deepcopy(obj), revision))
        elif kind == "MutatingWebhookConfiguration" and name == INJECTOR:
            injector.append(_injector(copy.deepcopy(obj), revision))
    return [*pilot, *injector] if pilot else []


def _selected(labels: dict[str, str], revision: str) -> None:
    labels[REV] = revision


def _pilot(obj: Manifest, revision: str) -> Manifest:
    obj["metadata"]["name"] = f"{PILOT}-{revision}"
    spec = obj["spec"]
    kind = obj["kind"]
    if kind == "Deployment":
        _selected(spec["selector"]["matchLabels"], revision)
        pod = spec["template"]
        _selected(pod["metadata"]["labels"], revision)
        for constraint in pod["spec"].get("topologySpreadConstraints", []):
            _selected(constraint["labelSelector"]["matchLabels"], revision)
        container = pod["spec"]["containers"][0]
        container["args"] = [
            *(a for a in container.get("args", []) if not a.startswith("--revision")),
            f"--revision={revision}",
        ]
    elif kind == "Service":
        _selected(spec["selector"], revision)
    elif kind == "PodDisruptionBudget":
        _selected(spec["selector"]["matchLabels"], revision)
    elif kind == "HorizontalPodAutoscaler":
        spec["scaleTargetRef"]["name"] = f"{PILOT}-{revision}"
    return obj


def _injector(obj: Manifest, revision: str) -> Manifest:
    obj["metadata"]["name"] = injector_name(revision)
    obj["metadata"]["labels"]["operator.istio.io/component"] = "Pilot"
    webhooks = [w for w in obj["webhooks"] if w["name"] in REVISION_WEBHOOKS]
    for webhook in webhooks:
        webhook["clientConfig"]["service"]["path"] = injection_path(revision)
        for selector in (webhook["namespaceSelector"], webhook["objectSelector"]):
            for expression in selector.get("matchExpressions", []):
                if expression["key"] == REV and expression["operator"] == "In":
                    expression["values"] = [revision]
    obj["webhooks"] = webhooks
    return obj
