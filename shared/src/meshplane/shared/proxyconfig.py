"""Istio's ProxyConfig: the proxy's own settings, merged with Istio's precedence, then applied at
injection (``meshplane.shared.inject``) and bootstrap (``meshctl bootstrap``, ``meshctl up``).

Sources, lowest to highest precedence (Istio's ``EffectiveProxyConfig``): MeshConfig
``defaultConfig`` < the ProxyConfig resource without selector in the root namespace < the one
without selector in the workload's namespace < the pod annotation ``proxy.istio.io/config`` < the
first (oldest) ProxyConfig in the workload's namespace whose ``selector`` matches its labels. A
resource carries ``concurrency``, ``environmentVariables`` (which become ``proxyMetadata``) and
``image``; MeshConfig and the annotation carry the whole mesh ProxyConfig. Merging is protobuf's
(``proto.Merge``): scalars override, maps merge key by key, lists append; ``concurrency`` and
``image`` are replaced whole.

meshplane applies the fields in :data:`APPLIED`; every other field is reported by
:func:`not_applied` so that a warning names it ("accepted, not applied by meshplane: ...").
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshplane.shared.durations import parse_duration

Obj = dict[str, Any]

ANNOTATION = "proxy.istio.io/config"
#: the fields of a mesh ProxyConfig (``defaultConfig``, the annotation) that meshplane applies
APPLIED = (
    "concurrency",
    "image",
    "drainDuration",
    "terminationDrainDuration",
    "proxyMetadata",
    "holdApplicationUntilProxyStarts",
    "discoveryAddress",
    "proxyStatsMatcher",
    "proxyHeaders",
    # a VM's probe: Pilot health-checks its auto-registered WorkloadEntry, run by workload-probe
    "readinessProbe",
)
#: the ``proxyHeaders`` fields Pilot applies (the others are named by :func:`not_applied`)
APPLIED_PROXY_HEADERS = ("server", "requestId", "envoyDebugHeaders")
IMAGE_TYPES = ("default", "debug", "distroless")
_MATCHER_KEYS = ("inclusionPrefixes", "inclusionSuffixes", "inclusionRegexps")
#: Istio's stats always kept when a matcher is given (``pkg/bootstrap``): Envoy's own health
REQUIRED_STATS_PREFIXES = (
    "reporter=",
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
    "component",
)


class ProxyConfigError(ValueError):
    """A ProxyConfig value that cannot be applied; the message names where and which field."""


def _duration(value: Any, where: str) -> float:
    if not isinstance(value, str):
        raise ProxyConfigError(f"{where}: expected a duration such as 45s, got {value!r}")
    try:
        seconds = parse_duration(value, signed=False).total_seconds()
    except ValueError as exc:
        raise ProxyConfigError(f"{where}: {exc}") from None
    return seconds


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProxyConfigError(f"{where}: expected a list of strings, got {value!r}")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ProxyConfigError(f"{where}: expected a map of names to strings, got {value!r}")
    return {k: str(v) for k, v in value.items()}


def _discovery(value: Any, where: str) -> str:
    host, sep, port = str(value).rpartition(":")
    if not isinstance(value, str) or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProxyConfigError(f"{where}: expected HOST:PORT, got {value!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            raise ProxyConfigError(f"{where}: {host!r} is not an IPv6 address") from None
    return value


def check_proxy_config(doc: Any, where: str) -> Obj:
    """A mesh ProxyConfig mapping (``defaultConfig``, the annotation) checked field by field;
    returns it (a copy). Raises :class:`ProxyConfigError` naming ``where`` and the field."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ProxyConfigError(f"{where}: expected a ProxyConfig mapping, got {type(doc).__name__}")
    out = copy.deepcopy(doc)
    concurrency = doc.get("concurrency")
    if concurrency is not None and (
        not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0
    ):
        raise ProxyConfigError(f"{where}: concurrency: expected a whole number >= 0, got {concurrency!r}")
    image = doc.get("image")
    if image is not None and not (isinstance(image, dict) and isinstance(image.get("imageType", ""), str)):
        raise ProxyConfigError(f"{where}: image: expected a mapping with imageType, got {image!r}")
    for key in ("drainDuration", "terminationDrainDuration"):
        if key in doc:
            _duration(doc[key], f"{where}: {key}")
    if "proxyMetadata" in doc:
        out["proxyMetadata"] = _string_map(doc["proxyMetadata"], f"{where}: proxyMetadata")
    hold = doc.get("holdApplicationUntilProxyStarts")
    if hold is not None and not isinstance(hold, bool):
        raise ProxyConfigError(
            f"{where}: holdApplicationUntilProxyStarts: expected true or false, got {hold!r}"
        )
    if "discoveryAddress" in doc:
        _discovery(doc["discoveryAddress"], f"{where}: discoveryAddress")
    matcher = doc.get("proxyStatsMatcher")
    if matcher is not None:
        if not isinstance(matcher, dict):
            raise ProxyConfigError(f"{where}: proxyStatsMatcher: expected a mapping, got {matcher!r}")
        for key in matcher:
            if key not in _MATCHER_KEYS:
                raise ProxyConfigError(
                    f"{where}: proxyStatsMatcher.{key}: unknown field (have {', '.join(_MATCHER_KEYS)})"
                )
            _strings(matcher[key], f"{where}: proxyStatsMatcher.{key}")
    if "proxyHeaders" in doc:
        _check_headers(doc["proxyHeaders"], where)
    return out


def _check_headers(headers: Any, where: str) -> None:
    if not isinstance(headers, dict):
        raise ProxyConfigError(f"{where}: proxyHeaders: expected a mapping, got {headers!r}")
    for key in APPLIED_PROXY_HEADERS:
        part = headers.get(key)
        if part is None:
            continue
        if not isinstance(part, dict) or not isinstance(part.get("disabled", False), bool):
            expected = "expected {disabled: true|false}"
            raise ProxyConfigError(f"{where}: proxyHeaders.{key}: {expected}, got {part!r}")
    if not isinstance((headers.get("server") or {}).get("value", ""), str):
        raise ProxyConfigError(f"{where}: proxyHeaders.server.value: expected a string")


def not_applied(doc: Mapping[str, Any]) -> list[str]:
    """The fields of a mesh ProxyConfig that meshplane accepts but does not apply."""
    out = [str(k) for k in doc if k not in APPLIED]
    headers = doc.get("proxyHeaders")
    if isinstance(headers, dict):
        out += [f"proxyHeaders.{k}" for k in headers if k not in APPLIED_PROXY_HEADERS]
    return sorted(out)


def from_resource(spec: Mapping[str, Any]) -> Obj:
    """A ``networking.istio.io`` ProxyConfig resource's spec as a mesh ProxyConfig (Istio's
    ``toMeshConfigProxyConfig``: ``environmentVariables`` become ``proxyMetadata``)."""
    out: Obj = {}
    if spec.get("concurrency") is not None:
        out["concurrency"] = spec["concurrency"]
    if spec.get("environmentVariables"):
        out["proxyMetadata"] = {str(k): str(v) for k, v in spec["environmentVariables"].items()}
    if spec.get("image") is not None:
        out["image"] = spec["image"]
    return out


def _merge(base: Obj, over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if key in ("concurrency", "image"):
            base[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            base[key] = base[key] + copy.deepcopy(value)
        else:
            base[key] = copy.deepcopy(value)


def merge_with_precedence(*configs: Mapping[str, Any] | None) -> Obj:
    """Istio's ``mergeWithPrecedence``: the first config wins over the later ones."""
    merged: Obj = {}
    for config in reversed(configs):
        if config:
            _merge(merged, config)
    return merged


@dataclass(frozen=True)
class ProxyConfigResource:
    """One ProxyConfig resource: where it lives, its selector and its spec (mesh form)."""

    namespace: str
    name: str
    selector: Mapping[str, str] | None
    config: Obj
    created: str = ""

    @staticmethod
    def from_object(obj: Mapping[str, Any]) -> ProxyConfigResource:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        labels = None if selector is None else dict((selector or {}).get("matchLabels") or {})
        return ProxyConfigResource(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            selector=labels,
            config=from_resource(spec),
            created=str(meta.get("creationTimestamp") or ""),
        )


@dataclass(frozen=True)
class ProxyConfigs:
    """What the effective ProxyConfig of a workload is computed from."""

    mesh_default: Obj = field(default_factory=dict)
    resources: tuple[ProxyConfigResource, ...] = ()
    root_namespace: str = "istio-system"

    @staticmethod
    def build(
        mesh_default: Mapping[str, Any] | None,
        objects: Iterable[Mapping[str, Any]],
        root_namespace: str = "istio-system",
    ) -> ProxyConfigs:
        """From MeshConfig ``defaultConfig`` and ProxyConfig objects, oldest first (as Istio sorts)."""
        resources = sorted(
            (ProxyConfigResource.from_object(o) for o in objects),
            key=lambda r: (r.created, r.namespace, r.name),
        )
        return ProxyConfigs(dict(mesh_default or {}), tuple(resources), root_namespace)

    def _namespace_wide(self, namespace: str) -> Obj | None:
        return next(
            (r.config for r in self.resources if r.namespace == namespace and r.selector is None), None
        )

    def _workload(self, namespace: str, labels: Mapping[str, str]) -> Obj | None:
        for r in self.resources:
            if (
                r.namespace == namespace
                and r.selector
                and all(labels.get(k) == v for k, v in r.selector.items())
            ):
                return r.config
        return None

    def effective(self, namespace: str, labels: Mapping[str, str], annotation: str | None = None) -> Obj:
        """The workload's effective ProxyConfig (Istio's precedence, see the module docstring);
        ``annotation`` is the pod's ``proxy.istio.io/config`` YAML (checked: ProxyConfigError)."""
        pod: Obj | None = None
        if annotation:
            import yaml

            try:
                doc = yaml.safe_load(annotation)
            except yaml.YAMLError as exc:
                raise ProxyConfigError(
                    f"annotation {ANNOTATION}: not valid YAML: {str(exc).splitlines()[0]}"
                ) from None
            pod = check_proxy_config(doc, f"annotation {ANNOTATION}")
        return merge_with_precedence(
            self._workload(namespace, labels),
            pod,
            self._namespace_wide(namespace),
            self._namespace_wide(self.root_namespace),
            self.mesh_default,
        )


def _image_type(doc: Mapping[str, Any]) -> str:
    """``image.imageType``; an unknown type is the default image, as Istio's injector treats it."""
    kind = str((doc.get("image") or {}).get("imageType") or "default")
    return kind if kind in IMAGE_TYPES else "default"


@dataclass(frozen=True)
class ProxySettings:
    """The applied fields of an effective ProxyConfig, typed."""

    concurrency: int | None = None
    image_type: str = "default"
    drain_seconds: float | None = None
    termination_drain_seconds: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    hold_application: bool = False
    discovery_address: str = ""
    stats_prefixes: tuple[str, ...] = ()
    stats_suffixes: tuple[str, ...] = ()
    stats_regexps: tuple[str, ...] = ()

    @staticmethod
    def of(config: Mapping[str, Any], where: str = "ProxyConfig") -> ProxySettings:
        doc = check_proxy_config(dict(config), where)
        matcher = doc.get("proxyStatsMatcher") or {}
        drain, term = doc.get("drainDuration"), doc.get("terminationDrainDuration")
        return ProxySettings(
            concurrency=doc.get("concurrency"),
            image_type=_image_type(doc),
            drain_seconds=None if drain is None else _duration(drain, where),
            termination_drain_seconds=None if term is None else _duration(term, where),
            metadata=dict(doc.get("proxyMetadata") or {}),
            hold_application=bool(doc.get("holdApplicationUntilProxyStarts", False)),
            discovery_address=str(doc.get("discoveryAddress") or ""),
            stats_prefixes=tuple(matcher.get("inclusionPrefixes") or ()),
            stats_suffixes=tuple(matcher.get("inclusionSuffixes") or ()),
            stats_regexps=tuple(matcher.get("inclusionRegexps") or ()),
        )

    @property
    def has_stats_matcher(self) -> bool:
        return bool(self.stats_prefixes or self.stats_suffixes or self.stats_regexps)

    def node_metadata(self) -> dict[str, str]:
        """``proxyMetadata`` entries ``ISTIO_META_<KEY>`` as node metadata ``<KEY>`` (Istio's agent)."""
        prefix = "ISTIO_META_"
        return {
            k[len(prefix) :]: v
            for k, v in self.metadata.items()
            if k.startswith(prefix) and len(k) > len(prefix)
        }

    def envoy_args(self) -> list[str]:
        """Envoy's command-line options for these settings (concurrency 0: all cores, Envoy's default)."""
        args: list[str] = []
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        if self.drain_seconds is not None:
            # Istio's agent: drain time and the immediate strategy (connections closed as drained)
            args += [
                "--drain-time-s",
                str(max(0, round(self.drain_seconds))),
                "--drain-strategy",
                "immediate",
            ]
        return args

    def stats_config(self) -> Obj:
        """The bootstrap's ``stats_config`` for ``proxyStatsMatcher`` (Istio's required prefixes
        kept), or {} without a matcher."""
        if not self.has_stats_matcher:
            return {}
        patterns: list[Obj] = [{"prefix": p} for p in (*REQUIRED_STATS_PREFIXES, *self.stats_prefixes)]
        patterns += [{"suffix": s} for s in self.stats_suffixes]
        patterns += [{"safe_regex": {"regex": r}} for r in self.stats_regexps]
        return {"stats_matcher": {"inclusion_list": {"patterns": patterns}}}


@dataclass(frozen=True)
class ProxyHeaders:
    """ProxyConfig ``proxyHeaders`` as Pilot applies them to a proxy's HTTP connection managers
    (Istio's ``GetProxyHeaders``); the defaults change nothing."""

    #: ``server.value``: the Server header Envoy writes ("" = Envoy's own)
    server_name: str = ""
    #: ``server.disabled``: the upstream's Server header passes through untouched
    server_pass_through: bool = False
    #: ``requestId.disabled`` turns Envoy's x-request-id generation off
    generate_request_id: bool = True
    #: ``envoyDebugHeaders.disabled``: the router adds no ``x-envoy-*`` headers
    suppress_envoy_headers: bool = False

    @staticmethod
    def of(proxy_config: Any) -> ProxyHeaders:
        """From a proxy's ``PROXY_CONFIG`` node metadata; anything malformed counts as unset."""
        headers = proxy_config.get("proxyHeaders") if isinstance(proxy_config, dict) else None
        if not isinstance(headers, dict):
            return ProxyHeaders()

        def part(key: str) -> dict[str, Any]:
            value = headers.get(key)
            return value if isinstance(value, dict) else {}

        server = part("server")
        return ProxyHeaders(
            server_name=str(server.get("value") or "") if server.get("disabled") is not True else "",
            server_pass_through=server.get("disabled") is True,
            generate_request_id=part("requestId").get("disabled") is not True,
            suppress_envoy_headers=part("envoyDebugHeaders").get("disabled") is True,
        )

    @property
    def is_default(self) -> bool:
        return self == ProxyHeaders()
