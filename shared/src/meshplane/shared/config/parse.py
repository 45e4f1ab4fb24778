"""Turn a spec dict into its typed model, and pydantic's errors into Istio-style field paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import BaseModel, ValidationError

from meshplane.shared.config.issues import Issue
from meshplane.shared.config.lazy import LazyTable

if TYPE_CHECKING:
    from meshplane.shared.config import models

_M = "meshplane.shared.config.models."

#: kind -> its spec model; each model's module is imported when its kind is first looked up
SPEC_MODELS: LazyTable[type[BaseModel]] = LazyTable(
    {
        "VirtualService": _M + "virtual_service:VirtualService",
        "DestinationRule": _M + "destination_rule:DestinationRule",
        "Gateway": _M + "gateway:Gateway",
        "ServiceEntry": _M + "service_entry:ServiceEntry",
        "WorkloadEntry": _M + "service_entry:WorkloadEntry",
        "WorkloadGroup": _M + "service_entry:WorkloadGroup",
        "Sidecar": _M + "sidecar:Sidecar",
        "EnvoyFilter": _M + "envoy_filter:EnvoyFilter",
        "ProxyConfig": _M + "extensions:ProxyConfig",
        "PeerAuthentication": _M + "security:PeerAuthentication",
        "AuthorizationPolicy": _M + "security:AuthorizationPolicy",
        "RequestAuthentication": _M + "security:RequestAuthentication",
        "Telemetry": _M + "telemetry:Telemetry",
        "WasmPlugin": _M + "extensions:WasmPlugin",
        "Service": _M + "kube:ServiceSpec",
        "Pod": _M + "kube:PodSpec",
        "Namespace": _M + "kube:NamespaceSpec",
        "EndpointSlice": _M + "kube:EndpointSlice",
        "Endpoints": _M + "kube:Endpoints",
    }
)


class SpecError(ValueError):
    """A spec that does not fit its kind's schema; ``issues`` name each bad field."""

    def __init__(self, kind: str, issues: list[Issue]) -> None:
        self.kind = kind
        self.issues = issues
        super().__init__(f"invalid {kind} spec: " + "; ".join(str(i) for i in issues))


_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
}


def _yaml_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _render_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if part == "[key]":
            path += " (map key)"
        elif isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_yaml_type(error.get('input'))}"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    if kind in ("enum", "literal_error"):
        return f"invalid value {error.get('input')!r}: {msg}"
    return msg


def issues_from_validation_error(exc: ValidationError, prefix: str = "spec") -> list[Issue]:
    """One Issue per pydantic error, with the camelCase path Istio's YAML uses."""
    return [Issue(_render_path(prefix, tuple(e["loc"])), _message(e)) for e in exc.errors()]


@overload
def parse_spec(kind: Literal["VirtualService"], spec: Mapping[str, Any]) -> models.VirtualService: ...
@overload
def parse_spec(kind: Literal["DestinationRule"], spec: Mapping[str, Any]) -> models.DestinationRule: ...
@overload
def parse_spec(kind: Literal["Gateway"], spec: Mapping[str, Any]) -> models.Gateway: ...
@overload
def parse_spec(kind: Literal["ServiceEntry"], spec: Mapping[str, Any]) -> models.ServiceEntry: ...
@overload
def parse_spec(kind: Literal["WorkloadEntry"], spec: Mapping[str, Any]) -> models.WorkloadEntry: ...
@overload
def parse_spec(kind: Literal["WorkloadGroup"], spec: Mapping[str, Any]) -> models.WorkloadGroup: ...
@overload
def parse_spec(kind: Literal["Sidecar"], spec: Mapping[str, Any]) -> models.Sidecar: ...
@overload
def parse_spec(kind: Literal["EnvoyFilter"], spec: Mapping[str, Any]) -> models.EnvoyFilter: ...
@overload
def parse_spec(kind: Literal["PeerAuthentication"], spec: Mapping[str, Any]) -> models.PeerAuthentication: ...
@overload
def parse_spec(
    kind: Literal["AuthorizationPolicy"], spec: Mapping[str, Any]
) -> models.AuthorizationPolicy: ...
@overload
def parse_spec(
    kind: Literal["RequestAuthentication"], spec: Mapping[str, Any]
) -> models.RequestAuthentication: ...
@overload
def parse_spec(kind: Literal["Telemetry"], spec: Mapping[str, Any]) -> models.Telemetry: ...
@overload
def parse_spec(kind: str, spec: Mapping[str, Any]) -> BaseModel: ...


def parse_spec(kind: str, spec: Mapping[str, Any]) -> BaseModel:
    """Build the typed model for ``kind`` from its ``spec`` (camelCase or snake_case keys).

    For EndpointSlice and Endpoints, pass the whole object (they have no ``spec``).

    Raises:
        KeyError: ``kind`` is not a known kind.
        SpecError: the spec does not fit the schema; ``.issues`` names each bad field.
    """
    model = SPEC_MODELS[kind]
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise SpecError(kind, issues_from_validation_error(exc)) from None
