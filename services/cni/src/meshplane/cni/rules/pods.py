"""Which pods get capture rules: Istio's skip rules over the pod metadata (pure, stdlib only).

The node agent serves :class:`PodInfo` as JSON to the plugin; the same decision is used by the
plugin on ADD and by the agent when it looks for pods that came up without capture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from meshplane.cni.rules.settings import ANN_INJECT, ANN_MODE, ANN_STATUS

DEFAULT_EXCLUDED_NAMESPACES = ("istio-system", "kube-system")
ISTIO_INIT = "istio-init"
FALSE_VALUES = ("false", "n", "no", "off", "0")


class PodInfo(NamedTuple):
    """What the plugin needs to know about a pod (a projection of the Kubernetes Pod)."""

    namespace: str
    name: str
    annotations: Mapping[str, str] = {}  # never mutated
    labels: Mapping[str, str] = {}
    containers: tuple[str, ...] = ()
    init_containers: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    node: str = ""
    uid: str = ""

    def to_json(self) -> dict[str, object]:
        """The agent's wire form (also what ``--pods-file`` may hold in place of a Pod)."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "node": self.node,
            "annotations": dict(self.annotations),
            "labels": dict(self.labels),
            "containers": list(self.containers),
            "initContainers": list(self.init_containers),
            "ips": list(self.ips),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PodInfo:
        """Inverse of :meth:`to_json`; raises ``ValueError`` naming a malformed field."""

        def text(key: str) -> str:
            value = data.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"pod field {key!r} must be a string")
            return value

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"pod field {key!r} must be a list of strings")
            return tuple(value)

        def mapping(key: str) -> dict[str, str]:
            value = data.get(key) or {}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"pod field {key!r} must map strings to strings")
            return {str(k): v for k, v in value.items()}

        return cls(
            namespace=text("namespace"),
            name=text("name"),
            uid=text("uid"),
            node=text("node"),
            annotations=mapping("annotations"),
            labels=mapping("labels"),
            containers=strings("containers"),
            init_containers=strings("initContainers"),
            ips=strings("ips"),
        )


def skip_reason(pod: PodInfo, excluded_namespaces: Iterable[str]) -> str | None:
    """Why the pod gets no capture rules (Istio's order), or ``None`` when it should be captured."""
    if pod.namespace in excluded_namespaces:
        return f"namespace {pod.namespace} is excluded"
    if ISTIO_INIT in pod.init_containers:
        return "pod has an istio-init container that sets up capture itself"
    if len(pod.containers) < 2:
        return "pod has fewer than 2 containers (no sidecar)"
    if pod.annotations.get(ANN_INJECT, "").strip().lower() in FALSE_VALUES:
        return f"{ANN_INJECT} is false"
    if ANN_STATUS not in pod.annotations:
        return f"pod was not injected (no {ANN_STATUS})"
    if pod.annotations.get(ANN_MODE, "").strip().upper() == "NONE":
        return f"{ANN_MODE} is NONE"
    return None
