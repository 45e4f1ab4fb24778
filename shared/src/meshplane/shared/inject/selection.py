"""Which pods are injected: Istio's ``injectRequired`` (facts: injection webhook, "Which pods").

The namespace labels (``istio-injection=enabled``, ``istio.io/rev``) are the API server's part:
the MutatingWebhookConfiguration's selectors decide which pods reach the webhook at all. What
reaches it is decided here, from the pod alone.
"""

from __future__ import annotations

import logging

from meshplane.shared.inject.config import ANN_INJECT, ANN_STATUS, IGNORED_NAMESPACES, InjectorConfig, Obj

log = logging.getLogger("meshplane.inject")


def _mapping(meta: Obj, key: str) -> dict[str, object]:
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def injection_required(pod: Obj, namespace: str, config: InjectorConfig) -> bool:
    """True when ``pod`` (a Pod or pod template: ``metadata`` + ``spec``) gets the sidecar.

    In order: ``hostNetwork`` pods and Kubernetes' system namespaces never; a pod that already
    carries ``sidecar.istio.io/status`` is not injected twice; the ``sidecar.istio.io/inject``
    label, else the legacy annotation, when it is exactly ``"true"`` or ``"false"`` (any other
    value is logged and ignored); else the injector's policy.
    """
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(meta, dict) and isinstance(spec, dict)
    if spec.get("hostNetwork") is True or namespace in IGNORED_NAMESPACES:
        return False
    labels, annotations = _mapping(meta, "labels"), _mapping(meta, "annotations")
    if ANN_STATUS in annotations:
        return False
    choice = labels.get(ANN_INJECT, annotations.get(ANN_INJECT))
    if choice == "true":
        return True
    if choice == "false":
        return False
    if choice is not None:
        log.warning('ignoring %s=%r (only "true" or "false" mean something)', ANN_INJECT, choice)
    return config.policy == "enabled"
