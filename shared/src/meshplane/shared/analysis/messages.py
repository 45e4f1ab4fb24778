"""Analyzer message types (Istio's codes, names and levels) and the messages analyzers emit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR = "Error"
WARNING = "Warning"
INFO = "Info"

#: Ordering for thresholds: a level at or above ``Error`` fails ``meshctl analyze``.
LEVEL_RANK = {INFO: 0, WARNING: 1, ERROR: 2}


@dataclass(frozen=True, slots=True)
class MessageType:
    code: str
    name: str
    level: str


REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", "ReferencedResourceNotFound", ERROR)
NAMESPACE_NOT_INJECTED = MessageType("IST0102", "NamespaceNotInjected", INFO)
GATEWAY_PORT_NOT_ON_WORKLOAD = MessageType("IST0104", "GatewayPortNotOnWorkload", WARNING)
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", "SchemaValidationError", ERROR)
MISPLACED_ANNOTATION = MessageType("IST0107", "MisplacedAnnotation", WARNING)
UNKNOWN_ANNOTATION = MessageType("IST0108", "UnknownAnnotation", WARNING)
CONFLICTING_MESH_GATEWAY_VS_HOSTS = MessageType("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", ERROR)
MTLS_POLICY_CONFLICT = MessageType("IST0113", "MTLSPolicyConflict", ERROR)
PORT_NAME_NOT_UNDER_CONVENTION = MessageType("IST0118", "PortNameIsNotUnderNamingConvention", INFO)
NO_SERVER_CERT_VERIFICATION_DR = MessageType(
    "IST0128", "NoServerCertificateVerificationDestinationLevel", WARNING
)
NO_SERVER_CERT_VERIFICATION_PORT = MessageType("IST0129", "NoServerCertificateVerificationPortLevel", WARNING)
VS_UNREACHABLE_RULE = MessageType("IST0130", "VirtualServiceUnreachableRule", WARNING)
VS_INEFFECTIVE_MATCH = MessageType("IST0131", "VirtualServiceIneffectiveMatch", INFO)
CONFLICTING_GATEWAYS = MessageType("IST0145", "ConflictingGateways", ERROR)

ALL_TYPES = (
    REFERENCED_RESOURCE_NOT_FOUND,
    NAMESPACE_NOT_INJECTED,
    GATEWAY_PORT_NOT_ON_WORKLOAD,
    SCHEMA_VALIDATION_ERROR,
    MISPLACED_ANNOTATION,
    UNKNOWN_ANNOTATION,
    CONFLICTING_MESH_GATEWAY_VS_HOSTS,
    MTLS_POLICY_CONFLICT,
    PORT_NAME_NOT_UNDER_CONVENTION,
    NO_SERVER_CERT_VERIFICATION_DR,
    NO_SERVER_CERT_VERIFICATION_PORT,
    VS_UNREACHABLE_RULE,
    VS_INEFFECTIVE_MATCH,
    CONFLICTING_GATEWAYS,
)


@dataclass(frozen=True, slots=True)
class Message:
    """One finding about one resource, printed the way ``istioctl analyze`` prints it."""

    type: MessageType
    #: ``Kind namespace/name`` (or ``Kind name`` for cluster-scoped resources).
    resource: str
    text: str
    #: Where the resource came from (``file.yaml:12``), or "".
    origin: str = ""

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> str:
        return self.type.level

    def __str__(self) -> str:
        where = f"{self.resource} {self.origin}" if self.origin else self.resource
        return f"{self.level} [{self.code}] ({where}) {self.text}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "level": self.level,
            "name": self.type.name,
            "resource": self.resource,
            "origin": self.origin,
            "message": self.text,
            "documentationUrl": f"https://istio.io/latest/docs/reference/config/analysis/{self.code.lower()}/",
        }
