"""Building blocks for the typed Istio models: the base class, durations, selectors, targetRefs.

Field names are snake_case in Python and camelCase (Istio's YAML spelling) on the wire; both are
accepted on input. Unknown fields are rejected, as Istio's CRD structural schema does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from meshplane.shared.config.checks.durations import format_duration, parse_duration


class IstioModel(BaseModel):
    """Base of every Istio spec model: camelCase aliases, snake_case attributes, no extra fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
        defer_build=True,
    )

    def to_yaml_dict(self) -> dict[str, Any]:
        """The object as Istio's YAML spells it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class KubeModel(BaseModel):
    """Base of the Kubernetes models: only the registry-relevant fields are typed; others kept."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True
    )


def _to_duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"duration must be a string such as '1.5s' or '100ms', not the number {value}")
    return value


#: A protobuf Duration written as a string ("1.5s", "100ms"); held as a timedelta.
Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]


def _to_key(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A map key that YAML may write as a number (``portLevelMtls: {8080: ...}``); held as a string.
NumericKey = Annotated[str, BeforeValidator(_to_key)]

#: A free-form protobuf Struct (EnvoyFilter patch values, plugin config).
Struct = dict[str, Any]


class WorkloadSelector(IstioModel):
    """``selector`` / ``workloadSelector`` in security and telemetry kinds (``matchLabels``)."""

    match_labels: dict[str, str] | None = None


class NetworkingWorkloadSelector(IstioModel):
    """``workloadSelector`` in Sidecar, EnvoyFilter and ServiceEntry (``labels``)."""

    labels: dict[str, str] | None = None


class PolicyTargetReference(IstioModel):
    """``targetRef`` / ``targetRefs``: a Gateway API style reference to a Service or Gateway."""

    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class Percent(IstioModel):
    value: float | None = None
