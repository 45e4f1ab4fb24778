"""Config objects and registry entries as Pilot sees them: small immutable records.

The spec of an Istio object is its typed model from ``meshplane.shared.config.models``, checked
once when it arrives from the bus (``config_from_bus``); generators read its attributes, so mypy
checks them against the schema and a renamed field is an error, not a silent None.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeGuard, TypeVar

from pydantic import BaseModel

from meshplane.proto.bus.v1 import config_pb2, registry_pb2
from meshplane.shared.config import SpecError, models, parse_spec
from meshplane.shared.config.parse import SPEC_MODELS

#: The typed spec of one kind (``models.VirtualService``, ...).
SpecT = TypeVar("SpecT", bound=BaseModel, covariant=True)
ModelT = TypeVar("ModelT", bound=BaseModel)

DOMAIN_SUFFIX = "svc.cluster.local"

#: The kind whose configs carry each spec model (``models.Sidecar`` → ``"Sidecar"``).
KIND_OF: dict[type[BaseModel], str] = {model: kind for kind, model in SPEC_MODELS.items()}

_KEBAB = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True)
class Config(Generic[SpecT]):
    """One Istio config object (VirtualService, DestinationRule, ...) with its typed spec."""

    kind: str
    group: str
    version: str
    namespace: str
    name: str
    spec: SpecT
    resource_version: str = ""
    #: ``metadata.creationTimestamp`` in seconds since the epoch (0 when the source has none);
    #: orders EnvoyFilters of equal priority, as Istio's.
    creation_time: float = 0.0
    #: ``metadata.annotations`` as sorted pairs (those a generator reads, e.g. ``istio.io/dry-run``)
    annotations: tuple[tuple[str, str], ...] = ()

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)

    @classmethod
    def parse(
        cls, kind: str, group: str, version: str, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> Config[BaseModel]:
        """A config whose ``spec`` (Istio's camelCase form) is checked against its kind's model;
        raises ValueError naming the object and each bad field."""
        return Config(kind, group, version, namespace, name, typed_spec(kind, f"{namespace}/{name}", spec))

    def spec_json(self) -> dict[str, Any]:
        """The spec as Istio's camelCase JSON object (only the fields that were set), for debug
        pages; generators read the typed ``spec``."""
        dumped: dict[str, Any] = self.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
        return dumped

    @property
    def source_path(self) -> str:
        """Istio's ``filter_metadata.istio.config`` value naming this object."""
        kind = _KEBAB.sub("-", self.kind).lower()
        group = self.group or "networking.istio.io"
        return f"/apis/{group}/{self.version or 'v1'}/namespaces/{self.namespace}/{kind}/{self.name}"

    @functools.cached_property
    def export_to(self) -> tuple[str, ...]:
        spec = self.spec
        if isinstance(spec, models.VirtualService | models.DestinationRule | models.ServiceEntry):
            return tuple(spec.export_to or ())
        return ()


#: A config of any kind.
AnyConfig = Config[BaseModel]


def given(value: ModelT | None) -> TypeGuard[ModelT]:
    """Whether an optional message was written with at least one field (``{}`` counts as absent)."""
    return value is not None and bool(value.model_fields_set)


def typed_spec(kind: str, where: str, spec: Mapping[str, Any]) -> BaseModel:
    """The shared typed model of ``kind`` built from ``spec``; ValueError names the object and
    each field that does not fit, or the kind when there is no model for it."""
    if kind not in SPEC_MODELS:
        raise ValueError(f"{kind} {where}: no typed model for kind {kind!r}")
    try:
        return parse_spec(kind, spec)
    except SpecError as exc:
        raise ValueError(f"{kind} {where}: {exc}") from None


def config_from_bus(msg: config_pb2.ConfigResource) -> Config[BaseModel]:
    """Decode a ConfigResource; raises ValueError naming the object when spec_json is not a JSON object."""
    try:
        spec = json.loads(msg.spec_json or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{msg.kind} {msg.namespace}/{msg.name}: spec_json is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{msg.kind} {msg.namespace}/{msg.name}: spec_json is not a JSON object")
    return Config(
        kind=msg.kind,
        group=msg.group,
        version=msg.version,
        namespace=msg.namespace,
        name=msg.name,
        spec=typed_spec(msg.kind, f"{msg.namespace}/{msg.name}", spec),
        resource_version=msg.resource_version,
        creation_time=msg.creation_timestamp.ToNanoseconds() / 1e9
        if msg.HasField("creation_timestamp")
        else 0.0,
        annotations=tuple(sorted(msg.annotations.items())),
    )


#: Protocols served by the HTTP connection manager.
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC_WEB"})
#: Every protocol Istio knows; a port with another (or none) has its protocol detected (sniffed).
KNOWN_PROTOCOLS = HTTP_PROTOCOLS | {"HTTPS", "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "UDP", "HBONE"}


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    protocol: str  # HTTP, HTTP2, GRPC, TCP, TLS, HTTPS, ... ("" or unknown: detected, see ``sniffed``)
    target_port: int = 0

    @property
    def is_http(self) -> bool:
        return self.protocol.upper() in HTTP_PROTOCOLS

    @property
    def sniffed(self) -> bool:
        """No protocol Istio knows (unset, or a name without a protocol prefix such as ``db``):
        the proxy detects HTTP on the connection, as Istio's protocol sniffing, else plain TCP."""
        return self.protocol.upper() not in KNOWN_PROTOCOLS


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    locality: str = ""
    weight: int = 1
    healthy: bool = True
    service_account: str = ""
    #: the network the endpoint is on ("" = reachable from every network, as Istio's empty network)
    network: str = ""
    #: the cluster whose registry holds the endpoint ("" = this Pilot's own)
    cluster_id: str = ""


@dataclass(frozen=True)
class Service:
    """A service in the registry (from Galley's registry or a ServiceEntry)."""

    hostname: str
    namespace: str
    ports: tuple[Port, ...]
    resolution: str = "STATIC"  # STATIC, DNS, DNS_ROUND_ROBIN, NONE
    addresses: tuple[str, ...] = ()
    mesh_external: bool = False
    export_to: tuple[str, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)
    #: Endpoints given inline (ServiceEntry ``endpoints``); registry workloads are added by the index.
    static_endpoints: tuple[tuple[str, dict[str, int], dict[str, str], str, int], ...] = ()
    source: str = ""
    #: ServiceEntry ``subjectAltNames``: identities its servers may present under Istio mTLS
    subject_alt_names: tuple[str, ...] = ()

    def port(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    address: str
    labels: dict[str, str]
    service_account: str = ""
    locality: str = ""
    healthy: bool = True
    weight: int = 1
    ports: dict[str, int] = field(default_factory=dict)
    services: tuple[str, ...] = ()
    #: ``WorkloadInstance.network``, else the ``topology.istio.io/network`` label ("" = none)
    network: str = ""
    #: the cluster whose registry published the workload ("" = this Pilot's own)
    cluster_id: str = ""


#: Istio's label naming the network of a pod, WorkloadEntry or namespace
NETWORK_LABEL = "topology.istio.io/network"

_PROTOCOLS = {v: k for k, v in registry_pb2.Protocol.items()}
_RESOLUTIONS = {v: k for k, v in registry_pb2.Resolution.items()}


def service_from_bus(msg: registry_pb2.Service) -> Service:
    resolution = _RESOLUTIONS.get(msg.resolution, "STATIC")
    return Service(
        hostname=msg.hostname,
        namespace=msg.namespace,
        ports=tuple(
            Port(
                p.name,
                p.number,
                _PROTOCOLS.get(p.protocol, "").replace("PROTOCOL_UNSPECIFIED", ""),
                p.target_port,
            )
            for p in msg.ports
        ),
        resolution="STATIC" if resolution == "RESOLUTION_UNSPECIFIED" else resolution,
        addresses=tuple(msg.addresses),
        mesh_external=msg.mesh_external,
        export_to=tuple(msg.export_to),
        selector=dict(msg.selector),
        source=f"{msg.source.kind}/{msg.source.namespace}/{msg.source.name}" if msg.source.kind else "",
    )


def workload_from_bus(msg: registry_pb2.WorkloadInstance) -> Workload:
    return Workload(
        name=msg.name,
        namespace=msg.namespace,
        address=msg.address,
        labels=dict(msg.labels),
        service_account=msg.service_account,
        locality=msg.locality,
        healthy=msg.health in (registry_pb2.HEALTHY, registry_pb2.HEALTH_UNSPECIFIED),
        weight=msg.weight or 1,
        ports=dict(msg.ports),
        services=tuple(msg.services),
        network=msg.network or msg.labels.get(NETWORK_LABEL, ""),
        cluster_id=msg.cluster_id,  # Galley's ``--cluster-id``
    )


def fqdn(host: str, namespace: str) -> str:
    """Resolve a short host (``reviews``) against a config namespace, as Istio does."""
    if host == "*" or host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.{DOMAIN_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, or ``*.suffix`` wildcards, ``*`` matches everything."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return False


def visible(export_to: tuple[str, ...], owner_ns: str, viewer_ns: str) -> bool:
    """exportTo semantics: empty or ``*`` = everywhere, ``.`` = own namespace, else listed namespaces."""
    if not export_to or "*" in export_to:
        return True
    if "." in export_to and owner_ns == viewer_ns:
        return True
    return viewer_ns in export_to


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
