"""The schema registry: which (group, kind) pairs meshplane knows, with versions and plural names.

Istio's webhook looks kinds up by group and kind only, ignoring the version, so a newer CRD
version never causes rejections; ``lookup_kind`` does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
EXTENSIONS = "extensions.istio.io"

#: The API groups Istio's validating webhook covers; an unknown kind in one of them is rejected.
ISTIO_GROUPS: frozenset[str] = frozenset({NETWORKING, SECURITY, TELEMETRY, EXTENSIONS})


@dataclass(frozen=True, slots=True)
class KindInfo:
    """One known kind: its API group ("" for the Kubernetes core group), versions and plural."""

    group: str
    kind: str
    versions: tuple[str, ...]
    plural: str
    namespaced: bool = True

    @property
    def is_istio(self) -> bool:
        return self.group in ISTIO_GROUPS

    def api_version(self) -> str:
        """The preferred apiVersion (the first listed version)."""
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]


_NET_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SEC_VERSIONS = ("v1", "v1beta1")

ALL_KINDS: tuple[KindInfo, ...] = (
    KindInfo(NETWORKING, "VirtualService", _NET_VERSIONS, "virtualservices"),
    KindInfo(NETWORKING, "DestinationRule", _NET_VERSIONS, "destinationrules"),
    KindInfo(NETWORKING, "Gateway", _NET_VERSIONS, "gateways"),
    KindInfo(NETWORKING, "ServiceEntry", _NET_VERSIONS, "serviceentries"),
    KindInfo(NETWORKING, "WorkloadEntry", _NET_VERSIONS, "workloadentries"),
    KindInfo(NETWORKING, "WorkloadGroup", _NET_VERSIONS, "workloadgroups"),
    KindInfo(NETWORKING, "Sidecar", _NET_VERSIONS, "sidecars"),
    KindInfo(NETWORKING, "EnvoyFilter", ("v1alpha3",), "envoyfilters"),
    KindInfo(NETWORKING, "ProxyConfig", ("v1beta1",), "proxyconfigs"),
    KindInfo(SECURITY, "PeerAuthentication", _SEC_VERSIONS, "peerauthentications"),
    KindInfo(SECURITY, "AuthorizationPolicy", _SEC_VERSIONS, "authorizationpolicies"),
    KindInfo(SECURITY, "RequestAuthentication", _SEC_VERSIONS, "requestauthentications"),
    KindInfo(TELEMETRY, "Telemetry", ("v1", "v1alpha1"), "telemetries"),
    KindInfo(EXTENSIONS, "WasmPlugin", ("v1alpha1",), "wasmplugins"),
    KindInfo("", "Service", ("v1",), "services"),
    KindInfo("", "Endpoints", ("v1",), "endpoints"),
    KindInfo("", "Pod", ("v1",), "pods"),
    KindInfo("", "Namespace", ("v1",), "namespaces", namespaced=False),
    KindInfo("discovery.k8s.io", "EndpointSlice", ("v1",), "endpointslices"),
)

_BY_GROUP_KIND: dict[tuple[str, str], KindInfo] = {(k.group, k.kind): k for k in ALL_KINDS}


def lookup_kind(group: str, kind: str) -> KindInfo | None:
    """The known kind for ``group`` ("" for core Kubernetes) and ``kind``, or None."""
    return _BY_GROUP_KIND.get((group, kind))


def split_api_version(api_version: str) -> tuple[str, str]:
    """``networking.istio.io/v1`` -> (``networking.istio.io``, ``v1``); ``v1`` -> ("", ``v1``)."""
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)
