"""The install resource: Istio's ``IstioOperator`` (``install.istio.io/v1alpha1``), the fields meshplane uses.

A file holds one IstioOperator; its ``spec`` is merged over a profile (``default`` first, then the
named one), then ``-f`` files in order, then ``--set`` flags in order, as istioctl merges them.
Every field is checked: an unknown one is refused with its path (``spec.components.pilot.k8s.replicas:
unknown field``), never dropped. Components are meshplane's: ``pilot``, ``galley``, ``citadel`` (the
CA and the node agents), ``cni``, and the ``ingressGateways`` / ``egressGateways`` lists.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

API_VERSION: Final = "install.istio.io/v1alpha1"
KIND: Final = "IstioOperator"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InstallError(Exception):
    """Bad install input or a failed install step; the message names the file, flag or field."""


def _dns_label(value: str | None) -> str | None:
    if value is not None and not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS label (lower case letters, digits and '-')")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class EnvVar(_Strict):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = Field(default=None, alias="valueFrom")


class ResourceList(_Strict):
    cpu: str | int | float | None = None
    memory: str | None = None


class Resources(_Strict):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class HpaSpec(_Strict):
    min_replicas: int | None = Field(default=None, alias="minReplicas", ge=1)
    max_replicas: int | None = Field(default=None, alias="maxReplicas", ge=1)
    metrics: list[dict[str, Any]] | None = None


class K8sSpec(_Strict):
    """``components.<name>.k8s``: what the component's workload gets."""

    replica_count: int | None = Field(default=None, alias="replicaCount", ge=0)
    resources: Resources | None = None
    hpa_spec: HpaSpec | None = Field(default=None, alias="hpaSpec")
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    tolerations: list[dict[str, Any]] | None = None
    env: list[EnvVar] | None = None
    pod_annotations: dict[str, str] | None = Field(default=None, alias="podAnnotations")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, alias="imagePullPolicy"
    )


class Component(_Strict):
    enabled: bool | None = None
    hub: str | None = None
    tag: str | None = None
    k8s: K8sSpec | None = None


class GatewayComponent(Component):
    name: str
    namespace: str | None = None
    label: dict[str, str] | None = None

    _names = field_validator("name", "namespace")(lambda v: _dns_label(v))


class Components(_Strict):
    #: namespace, CRDs, mesh config, the NATS bus and the NetworkPolicies
    base: Component | None = None
    pilot: Component | None = None
    galley: Component | None = None
    citadel: Component | None = None
    cni: Component | None = None
    ingress_gateways: list[GatewayComponent] | None = Field(default=None, alias="ingressGateways")
    egress_gateways: list[GatewayComponent] | None = Field(default=None, alias="egressGateways")


class MultiCluster(_Strict):
    cluster_name: str | None = Field(default=None, alias="clusterName")


class Logging(_Strict):
    level: str | None = None


class GlobalValues(_Strict):
    istio_namespace: str | None = Field(default=None, alias="istioNamespace")
    hub: str | None = None
    tag: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, alias="imagePullPolicy"
    )
    network: str | None = None
    mesh_id: str | None = Field(default=None, alias="meshID")
    multi_cluster: MultiCluster | None = Field(default=None, alias="multiCluster")
    logging: Logging | None = None

    _namespace = field_validator("istio_namespace")(lambda v: _dns_label(v))


class Values(_Strict):
    global_: GlobalValues | None = Field(default=None, alias="global")


class Spec(_Strict):
    profile: str | None = None
    revision: str | None = None
    hub: str | None = None
    tag: str | None = None
    mesh_config: dict[str, Any] | None = Field(default=None, alias="meshConfig")
    values: Values | None = None
    components: Components | None = None

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not _DNS_LABEL.match(value):
            raise ValueError(
                f"revision {value!r} is not a DNS label (lower case letters, digits and '-', "
                "at most 63, e.g. 1-24-0 rather than 1.24.0)"
            )
        return value


class Metadata(_Strict):
    name: str | None = None
    namespace: str | None = None


class IstioOperator(_Strict):
    api_version: Literal["install.istio.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["IstioOperator"] = KIND
    metadata: Metadata = Metadata()
    spec: Spec = Spec()


def parse_operator(doc: Any, where: str) -> IstioOperator:
    """Validate one IstioOperator document; InstallError names each bad field by its path."""
    if not isinstance(doc, dict):
        raise InstallError(f"{where}: expected an IstioOperator mapping, got {type(doc).__name__}")
    try:
        return IstioOperator.model_validate(doc)
    except ValidationError as exc:
        raise InstallError(f"{where}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    if error["type"] == "literal_error" and path in ("apiVersion", "kind"):
        return f"{path}: expected {API_VERSION if path == 'apiVersion' else KIND}, got {error['input']!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"
