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


_TYPES: list[MessageType] = []


def _t(code: str, name: str, level: str) -> MessageType:
    mtype = MessageType(code, name, level)
    _TYPES.append(mtype)
    return mtype


DEPRECATED = _t("IST0002", "Deprecated", WARNING)
REFERENCED_RESOURCE_NOT_FOUND = _t("IST0101", "ReferencedResourceNotFound", ERROR)
NAMESPACE_NOT_INJECTED = _t("IST0102", "NamespaceNotInjected", INFO)
POD_MISSING_PROXY = _t("IST0103", "PodMissingProxy", WARNING)
SCHEMA_VALIDATION_ERROR = _t("IST0106", "SchemaValidationError", ERROR)
MISPLACED_ANNOTATION = _t("IST0107", "MisplacedAnnotation", WARNING)
UNKNOWN_ANNOTATION = _t("IST0108", "UnknownAnnotation", WARNING)
CONFLICTING_MESH_GATEWAY_VS_HOSTS = _t("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", ERROR)
CONFLICTING_SIDECAR_SELECTORS = _t("IST0110", "ConflictingSidecarWorkloadSelectors", ERROR)
MULTIPLE_SIDECARS_WITHOUT_SELECTOR = _t("IST0111", "MultipleSidecarsWithoutWorkloadSelectors", ERROR)
VS_DESTINATION_PORT_REQUIRED = _t("IST0112", "VirtualServiceDestinationPortSelectorRequired", ERROR)
#: Retired at Istio HEAD (kept: meshplane still reports DestinationRule/PeerAuthentication mTLS clashes).
MTLS_POLICY_CONFLICT = _t("IST0113", "MTLSPolicyConflict", ERROR)
DEPLOYMENT_MULTIPLE_SERVICES = _t("IST0116", "DeploymentAssociatedToMultipleServices", WARNING)
PORT_NAME_NOT_UNDER_CONVENTION = _t("IST0118", "PortNameIsNotUnderNamingConvention", INFO)
NAMESPACE_MULTIPLE_INJECTION_LABELS = _t("IST0123", "NamespaceMultipleInjectionLabels", WARNING)
INVALID_ANNOTATION = _t("IST0125", "InvalidAnnotation", WARNING)
UNKNOWN_MESH_NETWORKS_REGISTRY = _t("IST0126", "UnknownMeshNetworksServiceRegistry", ERROR)
NO_MATCHING_WORKLOADS = _t("IST0127", "NoMatchingWorkloadsFound", WARNING)
NO_SERVER_CERT_VERIFICATION_DR = _t("IST0128", "NoServerCertificateVerificationDestinationLevel", WARNING)
NO_SERVER_CERT_VERIFICATION_PORT = _t("IST0129", "NoServerCertificateVerificationPortLevel", WARNING)
VS_UNREACHABLE_RULE = _t("IST0130", "VirtualServiceUnreachableRule", WARNING)
VS_INEFFECTIVE_MATCH = _t("IST0131", "VirtualServiceIneffectiveMatch", INFO)
VS_HOST_NOT_IN_GATEWAY = _t("IST0132", "VirtualServiceHostNotFoundInGateway", WARNING)
SCHEMA_WARNING = _t("IST0133", "SchemaWarning", WARNING)
SERVICE_ENTRY_ADDRESSES_REQUIRED = _t("IST0134", "ServiceEntryAddressesRequired", WARNING)
DEPRECATED_ANNOTATION = _t("IST0135", "DeprecatedAnnotation", INFO)
DEPLOYMENT_CONFLICTING_PORTS = _t("IST0137", "DeploymentConflictingPorts", WARNING)
GATEWAY_DUPLICATE_CERTIFICATE = _t("IST0138", "GatewayDuplicateCertificate", WARNING)
INVALID_WEBHOOK = _t("IST0139", "InvalidWebhook", ERROR)
INGRESS_ROUTE_RULES_NOT_AFFECTED = _t("IST0140", "IngressRouteRulesNotAffected", WARNING)
INVALID_APPLICATION_UID = _t("IST0144", "InvalidApplicationUID", WARNING)
CONFLICTING_GATEWAYS = _t("IST0145", "ConflictingGateways", ERROR)
IMAGE_AUTO_WITHOUT_INJECTION_WARNING = _t("IST0146", "ImageAutoWithoutInjectionWarning", WARNING)
IMAGE_AUTO_WITHOUT_INJECTION_ERROR = _t("IST0147", "ImageAutoWithoutInjectionError", ERROR)
NAMESPACE_INJECTION_ENABLED_BY_DEFAULT = _t("IST0148", "NamespaceInjectionEnabledByDefault", INFO)
JWT_CLAIM_ROUTING_WITHOUT_AUTHN = _t("IST0149", "JwtClaimBasedRoutingWithoutRequestAuthN", ERROR)
EXTERNAL_NAME_INVALID_PORT_NAME = _t("IST0150", "ExternalNameServiceTypeInvalidPortName", WARNING)
ENVOY_FILTER_RELATIVE_OPERATION = _t("IST0151", "EnvoyFilterUsesRelativeOperation", WARNING)
ENVOY_FILTER_REPLACE_INCORRECT = _t("IST0152", "EnvoyFilterUsesReplaceOperationIncorrectly", ERROR)
ENVOY_FILTER_ADD_INCORRECT = _t("IST0153", "EnvoyFilterUsesAddOperationIncorrectly", ERROR)
ENVOY_FILTER_REMOVE_INCORRECT = _t("IST0154", "EnvoyFilterUsesRemoveOperationIncorrectly", ERROR)
ENVOY_FILTER_RELATIVE_WITH_PROXY_VERSION = _t(
    "IST0155", "EnvoyFilterUsesRelativeOperationWithProxyVersion", WARNING
)
PODS_PROXY_IMAGE_MISMATCH = _t("IST0158", "PodsIstioProxyImageMismatchInNamespace", WARNING)
INVALID_TELEMETRY_PROVIDER = _t("IST0157", "InvalidTelemetryProvider", WARNING)
CONFLICTING_TELEMETRY_SELECTORS = _t("IST0159", "ConflictingTelemetryWorkloadSelectors", ERROR)
MULTIPLE_TELEMETRIES_WITHOUT_SELECTOR = _t("IST0160", "MultipleTelemetriesWithoutWorkloadSelectors", ERROR)
INVALID_GATEWAY_CREDENTIAL = _t("IST0161", "InvalidGatewayCredential", ERROR)
GATEWAY_PORT_NOT_ON_SERVICE = _t("IST0162", "GatewayPortNotDefinedOnService", WARNING)
INVALID_EXTERNAL_CONTROL_PLANE_CONFIG = _t("IST0163", "InvalidExternalControlPlaneConfig", WARNING)
EXTERNAL_CONTROL_PLANE_ADDRESS_IS_IP = _t("IST0164", "ExternalControlPlaneAddressIsNotAHostname", INFO)
REFERENCED_INTERNAL_GATEWAY = _t("IST0165", "ReferencedInternalGateway", WARNING)
INEFFECTIVE_SELECTOR = _t("IST0166", "IneffectiveSelector", WARNING)
INEFFECTIVE_POLICY = _t("IST0167", "IneffectivePolicy", WARNING)
NEGATIVE_CONDITION_STATUS = _t("IST0171", "NegativeConditionStatus", WARNING)
DESTINATION_RULE_SUBSET_NO_PODS = _t("IST0173", "DestinationRuleSubsetNotSelectPods", ERROR)
UNKNOWN_DESTINATION_RULE_HOST = _t("IST0174", "UnknownDestinationRuleHost", WARNING)
JWKS_URI_FETCH_UNRESTRICTED = _t("IST0175", "JwksUriFetchUnrestricted", WARNING)
GATEWAY_API_CRD_VERSION_BELOW_MINIMUM = _t("IST0176", "GatewayAPICRDVersionBelowMinimum", WARNING)
CONFLICTING_SERVICE_ENTRY_PROTOCOL = _t("IST0177", "ConflictingServiceEntryProtocol", WARNING)

ALL_TYPES = tuple(sorted(_TYPES, key=lambda t: t.code))
BY_CODE = {t.code: t for t in ALL_TYPES}


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
            "documentationUrl": self.doc_url(),
        }

    def doc_url(self) -> str:
        return f"https://istio.io/latest/docs/reference/config/analysis/{self.code.lower()}/?ref=istioctl-analyze"

    def to_istioctl(self) -> dict[str, Any]:
        """The object ``istioctl analyze -o json|yaml`` prints for this message."""
        out = {"code": self.code, "level": self.level, "origin": self.resource}
        if self.origin:
            out["reference"] = self.origin
        return out | {"message": self.text, "documentationUrl": self.doc_url()}
