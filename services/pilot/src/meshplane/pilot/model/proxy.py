"""A connected proxy: Istio's node ID and node metadata, parsed once per connection."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from enum import Enum

from google.protobuf import json_format, struct_pb2

from meshplane.pilot.model.proxyversion import NEWEST, Feature, ProxyVersion, Version, parse_istio_version
from meshplane.shared.proxyconfig import ProxyHeaders

#: Node metadata asking for SDS over the node agent's socket with the workload's token (Kubernetes).
SDS_TOKEN_PATH = "SDS_TOKEN_PATH"
SDS_UDS_PATH = "SDS_UDS_PATH"
DEFAULT_SDS_SOCKET = "/var/run/secrets/workload-spiffe-uds/socket"


class ProxyType(Enum):
    SIDECAR = "sidecar"
    ROUTER = "router"


class InvalidNode(ValueError):
    """The node ID or metadata sent by a proxy cannot be used."""


@dataclass(frozen=True)
class Proxy:
    """What Pilot knows about one proxy, from its first request."""

    type: ProxyType
    ip: str
    id: str  # POD.NS
    dns_domain: str
    node_id: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""
    instance_ips: tuple[str, ...] = ()
    workload_name: str = ""
    cluster_id: str = ""
    mesh_id: str = ""
    interception_none: bool = False
    istio_version: str = ""
    generator: str = ""
    #: The workload token file Envoy sends to the node agent on SDS streams ("" = bootstrap ``sds-grpc``).
    sds_token_path: str = ""
    sds_socket_path: str = ""
    #: ``region/zone/subzone`` from the node's locality ("" when the proxy sent none).
    locality: str = ""
    #: The node metadata entries with string values (EnvoyFilter ``match.proxy.metadata``).
    metadata: dict[str, str] = field(default_factory=dict)
    #: ProxyConfig ``proxyHeaders`` from node metadata ``PROXY_CONFIG``
    proxy_headers: ProxyHeaders = ProxyHeaders()
    #: VM metadata (Istio's): the WorkloadGroup to register under (``AUTO_REGISTER_GROUP``), the
    #: manually made WorkloadEntry to health-check (``WORKLOAD_ENTRY``), its ``NETWORK``, and
    #: whether its ProxyConfig has a ``readinessProbe`` (it then reports health over xDS)
    auto_register_group: str = ""
    workload_entry: str = ""
    network: str = ""
    readiness_probe: bool = False
    #: ``ISTIO_VERSION`` and Envoy's build version: what gated features it gets
    version: ProxyVersion = ProxyVersion()

    def supports(self, feature: Feature) -> bool:
        """Whether this proxy gets ``feature`` (Istio's ``VersionGreaterOrEqual``)."""
        return feature.name not in self.unsupported

    @functools.cached_property
    def unsupported(self) -> frozenset[str]:
        return self.version.unsupported

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[0]

    def scope_key(self) -> str:
        """Proxies with the same scope key see the same outbound config (CDS and routes)."""
        return self._scope_key

    @functools.cached_property
    def _scope_key(self) -> str:
        labels = json.dumps(sorted(self.labels.items()))
        sds = f"{self.sds_token_path}|{self.sds_socket_path}" if self.sds_token_path else ""
        headers = "" if self.proxy_headers.is_default else repr(self.proxy_headers)
        gated = ",".join(sorted(self.unsupported))
        return f"{self.type.value}|{self.namespace}|{labels}|{self.interception_none}|{sds}|{headers}|{gated}"

    @functools.cached_property
    def own_key(self) -> str:
        """Proxies with the same own key also get the same inbound (own) clusters and listeners."""
        return f"{self._scope_key}|{self.ip}|{','.join(self.instance_ips)}"


def _metadata(meta: struct_pb2.Struct) -> dict[str, object]:
    return json_format.MessageToDict(meta)


def locality_text(region: str, zone: str, subzone: str) -> str:
    """Istio's ``region/zone/subzone`` form of an Envoy node locality (trailing blanks dropped)."""
    return "/".join((region, zone, subzone)).rstrip("/")


def parse_proxy(
    node_id: str, meta: struct_pb2.Struct | None, locality: str = "", envoy_version: Version = NEWEST
) -> Proxy:
    """Parse ``sidecar~IP~POD.NS~NS.svc.cluster.local`` (or ``router~...``) and metadata;
    ``envoy_version`` is the build version the node reported."""
    parts = node_id.split("~")
    if len(parts) != 4:
        raise InvalidNode(f"node id {node_id!r}: expected TYPE~IP~POD.NAMESPACE~DOMAIN (4 parts)")
    kind, ip, pod_id, domain = parts
    try:
        ptype = ProxyType(kind)
    except ValueError:
        raise InvalidNode(f"node id {node_id!r}: type {kind!r} is not sidecar or router") from None
    md = _metadata(meta) if meta is not None else {}
    ns_from_id = pod_id.split(".", 1)[1] if "." in pod_id else ""
    namespace = str(md.get("NAMESPACE") or ns_from_id or (domain.split(".", 1)[0] if domain else ""))
    if not namespace:
        raise InvalidNode(f"node id {node_id!r}: no namespace in the id or NAMESPACE metadata")
    raw_labels = md.get("LABELS") or {}
    labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, dict) else {}
    ips_raw = md.get("INSTANCE_IPS") or ip
    instance_ips = tuple(x for x in str(ips_raw).split(",") if x)
    token_path = str(md.get(SDS_TOKEN_PATH) or "")
    socket_path = str(md.get(SDS_UDS_PATH) or DEFAULT_SDS_SOCKET)
    for key, path in ((SDS_TOKEN_PATH, token_path), (SDS_UDS_PATH, socket_path)):
        if token_path and not path.startswith("/"):
            raise InvalidNode(f"node {node_id!r}: metadata {key} must be an absolute path, got {path!r}")
    return Proxy(
        type=ptype,
        ip=ip,
        id=pod_id,
        dns_domain=domain,
        node_id=node_id,
        namespace=namespace,
        labels=labels,
        service_account=str(md.get("SERVICE_ACCOUNT") or ""),
        instance_ips=instance_ips,
        workload_name=str(md.get("WORKLOAD_NAME") or ""),
        cluster_id=str(md.get("CLUSTER_ID") or ""),
        mesh_id=str(md.get("MESH_ID") or ""),
        interception_none=str(md.get("INTERCEPTION_MODE") or "").upper() == "NONE",
        istio_version=str(md.get("ISTIO_VERSION") or ""),
        generator=str(md.get("GENERATOR") or ""),
        sds_token_path=token_path,
        sds_socket_path=socket_path if token_path else "",
        locality=locality,
        metadata={k: v for k, v in md.items() if isinstance(v, str)},
        proxy_headers=ProxyHeaders.of(md.get("PROXY_CONFIG")),
        version=ProxyVersion(parse_istio_version(str(md.get("ISTIO_VERSION") or "")), envoy_version),
        auto_register_group=str(md.get("AUTO_REGISTER_GROUP") or ""),
        workload_entry=str(md.get("WORKLOAD_ENTRY") or ""),
        network=str(md.get("NETWORK") or ""),
        readiness_probe=_has_probe(md.get("PROXY_CONFIG")),
    )


def _has_probe(proxy_config: object) -> bool:
    """Istio's PROXY_CONFIG metadata (a ProxyConfig as JSON) has a ``readinessProbe``."""
    if isinstance(proxy_config, str):
        try:
            proxy_config = json.loads(proxy_config)
        except ValueError:
            return False
    return isinstance(proxy_config, dict) and bool(proxy_config.get("readinessProbe"))
