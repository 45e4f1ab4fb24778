"""Istio's MeshConfig, as far as meshplane applies it: ``rootNamespace``, ``trustDomain`` and access logging.

``--mesh-config FILE`` (Pilot, Galley, Citadel) names Istio's MeshConfig YAML: the mapping that
the ``istio`` ConfigMap holds under ``data.mesh`` (the ConfigMap itself is accepted too). The
defaults are Istio's: root namespace ``istio-system``, trust domain ``cluster.local``. The root
namespace is where mesh-wide config lives (a PeerAuthentication, Sidecar, DestinationRule,
AuthorizationPolicy or RequestAuthentication there applies to every namespace). Access logging:
``accessLogFile``/``accessLogEncoding``/``accessLogFormat`` (the legacy mesh-wide log),
``defaultProviders.accessLogging`` and ``extensionProviders`` of type ``envoyFileAccessLog``
(Istio's built-in ``envoy`` provider included) and ``envoyOtelAls``
(:mod:`meshplane.shared.meshconfig_otelals`). ``extensionProviders`` of types ``envoyExtAuthzHttp``
and ``envoyExtAuthzGrpc`` serve AuthorizationPolicy CUSTOM (``meshconfig_authz``). Tracing:
``extensionProviders`` of type ``opentelemetry`` (:mod:`meshplane.shared.meshtracing`) and
``defaultProviders.tracing``. ``meshNetworks`` (also the ConfigMap's ``data.meshNetworks``):
networks and their east-west gateways (:mod:`meshplane.shared.meshnetworks`). Mesh-wide traffic
defaults (``outboundTrafficPolicy``, ...): :mod:`meshplane.shared.meshconfig_traffic`. Fields meshplane
does not apply yet (other provider types, default metrics providers, ``enableTracing: true``'s
legacy tracer, ...) are named in one warning, so a user never believes they took effect.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplane.shared.meshconfig_authz import KINDS as EXT_AUTHZ_KINDS
from meshplane.shared.meshconfig_authz import ExtAuthzError, ExtAuthzProvider, ext_authz_providers
from meshplane.shared.meshconfig_otelals import OtelAlsError, OtelAlsProvider, parse_otel_als
from meshplane.shared.meshconfig_traffic import APPLIED as TRAFFIC_APPLIED
from meshplane.shared.meshconfig_traffic import KEYS as TRAFFIC_KEYS
from meshplane.shared.meshconfig_traffic import MeshTraffic, TrafficFieldError, parse_traffic
from meshplane.shared.meshnetworks import MeshNetworks, MeshNetworksError, parse_mesh_networks
from meshplane.shared.meshtracing import OtelTracingProvider, TracingProviderError, parse_otel_provider
from meshplane.shared.proxyconfig import APPLIED as PROXY_CONFIG_APPLIED
from meshplane.shared.proxyconfig import ProxyConfigError, check_proxy_config, not_applied

log = logging.getLogger("meshplane.meshconfig")

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"
#: A config directory's own MeshConfig: ``meshctl up`` reads ``<config-dir>/mesh.yaml`` (unless
#: ``--mesh-config`` is given); Galley's directory source skips it, validate/analyze check it as
#: MeshConfig. Only this name, at the top of the directory.
CONFIG_DIR_FILE = "mesh.yaml"
APPLIED = (
    "rootNamespace",
    "trustDomain",
    "accessLogFile",
    "accessLogEncoding",
    "accessLogFormat",
    "defaultProviders.accessLogging",
    "extensionProviders (envoyFileAccessLog, envoyOtelAls)",
    "extensionProviders (envoyExtAuthzHttp, envoyExtAuthzGrpc)",
    "enableTracing: false",
    "defaultProviders.tracing",
    "extensionProviders (opentelemetry)",
    f"defaultConfig ({', '.join(PROXY_CONFIG_APPLIED)})",
    "meshNetworks",
    *TRAFFIC_APPLIED,
)
_APPLIED_KEYS = frozenset(
    {"rootNamespace", "trustDomain", "accessLogFile", "accessLogEncoding", "accessLogFormat", *TRAFFIC_KEYS}
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")


class MeshConfigError(ValueError):
    """A MeshConfig file that cannot be used; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class FileLogProvider:
    """An ``envoyFileAccessLog`` extension provider: a file and its format."""

    path: str = "/dev/stdout"
    #: ``logFormat.text`` (TEXT lines), or None
    text: str | None = None
    #: ``logFormat.labels`` (JSON lines; empty = Istio's built-in JSON map), or None
    labels: tuple[tuple[str, str], ...] | None = None
    omit_empty_values: bool = False

    @property
    def follows_mesh(self) -> bool:
        """No format of its own: the built-in ``envoy`` provider then uses MeshConfig's format."""
        return self.text is None and self.labels is None and not self.omit_empty_values


#: Istio's built-in access-log provider (``providers: [{name: envoy}]``)
BUILTIN_PROVIDERS: tuple[tuple[str, FileLogProvider], ...] = (("envoy", FileLogProvider()),)


@dataclass(frozen=True, slots=True)
class MeshConfig:
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: fields given that meshplane does not apply yet
    not_applied: tuple[str, ...] = ()
    #: ``accessLogFile``: the legacy mesh-wide access log ("" = off)
    access_log_file: str = ""
    #: ``accessLogEncoding``: TEXT or JSON
    access_log_encoding: str = "TEXT"
    #: ``accessLogFormat`` ("" = Istio's built-in format for the encoding)
    access_log_format: str = ""
    #: ``extensionProviders`` of type envoyFileAccessLog, by name (built-in ``envoy`` included)
    file_log_providers: tuple[tuple[str, FileLogProvider], ...] = BUILTIN_PROVIDERS
    #: ``extensionProviders`` of type envoyOtelAls, by name (:mod:`meshplane.shared.meshconfig_otelals`)
    otel_als_providers: tuple[tuple[str, OtelAlsProvider], ...] = ()
    #: ``defaultProviders.accessLogging``
    default_access_log_providers: tuple[str, ...] = ()
    #: ``extensionProviders`` of types envoyExtAuthzHttp/Grpc (AuthorizationPolicy CUSTOM), by name
    ext_authz_providers: tuple[tuple[str, ExtAuthzProvider], ...] = ()

    #: ``extensionProviders`` of type opentelemetry, by name (:mod:`meshplane.shared.meshtracing`)
    tracing_providers: tuple[tuple[str, OtelTracingProvider], ...] = ()
    #: ``defaultProviders.tracing``
    default_tracing_providers: tuple[str, ...] = ()
    #: ``defaultConfig``: the proxies' default ProxyConfig (mesh form; read at injection/bootstrap)
    default_config: dict[str, Any] = field(default_factory=dict, hash=False)
    #: ``meshNetworks`` (or the ConfigMap's ``data.meshNetworks``): networks and their gateways
    mesh_networks: MeshNetworks = MeshNetworks()
    #: ``outboundTrafficPolicy``, ``enableAutoMtls``, ``localityLbSetting``, ``default*ExportTo``,
    #: ``trustDomainAliases`` (:mod:`meshplane.shared.meshconfig_traffic`)
    traffic: MeshTraffic = MeshTraffic()

    def ext_authz_provider(self, name: str) -> ExtAuthzProvider | None:
        return dict(self.ext_authz_providers).get(name)

    def file_log_provider(self, name: str) -> FileLogProvider | None:
        return dict(self.file_log_providers).get(name)

    def otel_als_provider(self, name: str) -> OtelAlsProvider | None:
        return dict(self.otel_als_providers).get(name)

    def tracing_provider(self, name: str) -> OtelTracingProvider | None:
        return dict(self.tracing_providers).get(name)


def parse_mesh_config(text: str, where: str) -> MeshConfig:
    """Parse MeshConfig YAML (or an ``istio`` ConfigMap holding it); raise MeshConfigError."""
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MeshConfigError(f"{where}: not YAML: {exc}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        return parse_mesh_config(configmap_mesh_text(doc, where), f"{where} (data.mesh)")
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise MeshConfigError(f"{where}: expected a MeshConfig mapping, got {type(doc).__name__}")
    root = doc.get("rootNamespace", DEFAULT_ROOT_NAMESPACE)
    if not isinstance(root, str) or not _DNS_LABEL.match(root):
        raise MeshConfigError(f"{where}: rootNamespace: expected a Kubernetes namespace name, got {root!r}")
    domain = doc.get("trustDomain", DEFAULT_TRUST_DOMAIN)
    if not isinstance(domain, str) or not _TRUST_DOMAIN.match(domain):
        raise MeshConfigError(
            f"{where}: trustDomain: expected a domain such as cluster.local, got {domain!r}"
        )
    parsed_below = ("extensionProviders", "defaultProviders", "defaultConfig", "meshNetworks")
    ignored = [str(k) for k in doc if k not in _APPLIED_KEYS and k not in parsed_below]
    log_file = _string(doc, "accessLogFile", where)
    encoding = _string(doc, "accessLogEncoding", where) or "TEXT"
    if encoding not in ("TEXT", "JSON"):
        raise MeshConfigError(f"{where}: accessLogEncoding: expected TEXT or JSON, got {encoding!r}")
    providers = dict(BUILTIN_PROVIDERS)
    tracers: dict[str, OtelTracingProvider] = {}
    als: dict[str, OtelAlsProvider] = {}
    for name, provider in _extension_providers(doc.get("extensionProviders"), where, ignored):
        providers.pop(name, None)
        tracers.pop(name, None)
        als.pop(name, None)
        if isinstance(provider, FileLogProvider):
            providers[name] = provider
        elif isinstance(provider, OtelAlsProvider):
            als[name] = provider
        elif isinstance(provider, OtelTracingProvider):
            tracers[name] = provider
            ignored += [f"extensionProviders[{name}].{field}" for field in provider.not_applied]
    defaults = _default_providers(doc.get("defaultProviders"), where, ignored)
    try:
        authz = ext_authz_providers(doc.get("extensionProviders"), where)
    except ExtAuthzError as exc:
        raise MeshConfigError(str(exc)) from None
    # enableTracing is Istio's legacy switch (no tracing provider anywhere): the HCM then traces to
    # the bootstrap's ProxyConfig tracer. meshplane's bootstrap has none, so only false is applied.
    enable_tracing = doc.get("enableTracing", True)
    if not isinstance(enable_tracing, bool):
        raise MeshConfigError(f"{where}: enableTracing: expected true or false, got {enable_tracing!r}")
    if enable_tracing is False:
        ignored.remove("enableTracing")
    default_config = _default_config(doc.get("defaultConfig"), where, ignored)
    try:
        networks = parse_mesh_networks(doc.get("meshNetworks"), f"{where}: meshNetworks")
    except MeshNetworksError as exc:
        raise MeshConfigError(str(exc)) from None
    ignored.extend(networks.not_applied)
    try:
        traffic = parse_traffic(doc, where)
    except TrafficFieldError as exc:
        raise MeshConfigError(str(exc)) from None
    return MeshConfig(
        root,
        domain,
        access_log_file=log_file,
        access_log_encoding=encoding,
        access_log_format=_string(doc, "accessLogFormat", where),
        file_log_providers=tuple(sorted(providers.items())),
        otel_als_providers=tuple(sorted(als.items())),
        default_access_log_providers=defaults,
        ext_authz_providers=authz,
        tracing_providers=tuple(sorted(tracers.items())),
        default_tracing_providers=_names(doc.get("defaultProviders"), "tracing", where),
        default_config=default_config,
        mesh_networks=networks,
        traffic=traffic,
        not_applied=tuple(sorted(ignored)),
    )


def configmap_mesh_text(doc: dict[str, Any], where: str) -> str:
    """The MeshConfig YAML of an ``istio`` ConfigMap: ``data.mesh``, with ``data.meshNetworks``
    (Istio keeps MeshNetworks beside it) as its ``meshNetworks`` field."""
    data = doc.get("data") or {}
    mesh = data.get("mesh")
    if not isinstance(mesh, str):
        raise MeshConfigError(f"{where}: a ConfigMap without data.mesh (the MeshConfig YAML)")
    networks = data.get("meshNetworks")
    if networks is None:
        return mesh
    try:
        mesh_doc = yaml.safe_load(mesh) or {}
        networks_doc = yaml.safe_load(networks) if isinstance(networks, str) else networks
    except yaml.YAMLError as exc:
        raise MeshConfigError(f"{where}: data.mesh or data.meshNetworks is not YAML: {exc}") from None
    if not isinstance(mesh_doc, dict):
        raise MeshConfigError(f"{where} (data.mesh): expected a MeshConfig mapping")
    return yaml.safe_dump({**mesh_doc, "meshNetworks": networks_doc})


def _string(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MeshConfigError(f"{where}: {key}: expected a string, got {value!r}")
    return value


def _extension_providers(
    raw: Any, where: str, ignored: list[str]
) -> list[tuple[str, FileLogProvider | OtelTracingProvider | OtelAlsProvider | None]]:
    """(name, provider) per ``extensionProviders`` entry, merged by name into the built-ins as Istio
    does; a provider of another type is (name, None) and named in ``ignored``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MeshConfigError(f"{where}: extensionProviders: expected a list, got {type(raw).__name__}")
    out: list[tuple[str, FileLogProvider | OtelTracingProvider | OtelAlsProvider | None]] = []
    for i, entry in enumerate(raw):
        at = f"{where}: extensionProviders[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise MeshConfigError(f"{at}: expected a mapping with a name")
        name = entry["name"]
        kinds = [k for k in entry if k != "name"]
        if len(kinds) != 1:
            raise MeshConfigError(f"{at} ({name}): expected exactly one provider type, got {kinds}")
        if kinds[0] == "opentelemetry":
            try:
                out.append(
                    (name, parse_otel_provider(entry["opentelemetry"], f"{at} ({name}).opentelemetry"))
                )
            except TracingProviderError as exc:
                raise MeshConfigError(str(exc)) from None
            continue
        if kinds[0] == "envoyOtelAls":
            try:
                out.append((name, parse_otel_als(entry["envoyOtelAls"], f"{at} ({name}).envoyOtelAls")))
            except OtelAlsError as exc:
                raise MeshConfigError(str(exc)) from None
            continue
        if kinds[0] != "envoyFileAccessLog":
            if kinds[0] not in EXT_AUTHZ_KINDS:  # those: ext_authz_providers
                ignored.append(f"extensionProviders[{name}].{kinds[0]}")
            out.append((name, None))
            continue
        body = entry["envoyFileAccessLog"] or {}
        out.append((name, _file_provider(body, f"{at} ({name}).envoyFileAccessLog")))
    return out


def _file_provider(body: Any, at: str) -> FileLogProvider:
    if not isinstance(body, dict):
        raise MeshConfigError(f"{at}: expected a mapping, got {type(body).__name__}")
    path = body.get("path") or "/dev/stdout"
    omit = body.get("omitEmptyValues", False)
    if not isinstance(path, str) or not isinstance(omit, bool):
        raise MeshConfigError(f"{at}: path must be a string and omitEmptyValues true or false")
    fmt = body.get("logFormat") or {}
    if not isinstance(fmt, dict) or len(fmt) > 1 or (fmt and next(iter(fmt)) not in ("text", "labels")):
        raise MeshConfigError(f"{at}.logFormat: expected one of text or labels, got {fmt!r}")
    text = fmt.get("text")
    if text is not None and not isinstance(text, str):
        raise MeshConfigError(f"{at}.logFormat.text: expected a string, got {text!r}")
    labels = fmt.get("labels")
    if labels is not None and not isinstance(labels, dict):
        raise MeshConfigError(f"{at}.logFormat.labels: expected a mapping, got {labels!r}")
    pairs = None if labels is None else tuple((str(k), str(v)) for k, v in labels.items())
    return FileLogProvider(path, text, pairs, omit)


def _default_providers(raw: Any, where: str, ignored: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise MeshConfigError(f"{where}: defaultProviders: expected a mapping, got {type(raw).__name__}")
    for key, names in raw.items():
        if key not in ("accessLogging", "tracing") and names:
            ignored.append(f"defaultProviders.{key}")
    return _names(raw, "accessLogging", where)


def _names(raw: Any, key: str, where: str) -> tuple[str, ...]:
    names = (raw.get(key) if isinstance(raw, dict) else None) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MeshConfigError(f"{where}: defaultProviders.{key}: expected a list of provider names")
    return tuple(names)


def _default_config(raw: Any, where: str, ignored: list[str]) -> dict[str, Any]:
    try:
        checked = check_proxy_config(raw, f"{where}: defaultConfig")
    except ProxyConfigError as exc:
        raise MeshConfigError(str(exc)) from None
    ignored.extend(f"defaultConfig.{name}" for name in not_applied(checked))
    return checked


def load_mesh_config(path: Path | None) -> MeshConfig:
    """The MeshConfig in ``path`` (Istio's defaults when None); warns about fields not applied."""
    if path is None:
        return MeshConfig()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MeshConfigError(f"--mesh-config {path}: cannot read: {exc}") from None
    config = parse_mesh_config(text, f"--mesh-config {path}")
    if config.not_applied:
        log.warning(
            "%s: fields not applied by meshplane yet (only %s are): %s",
            path,
            ", ".join(APPLIED),
            ", ".join(config.not_applied),
        )
    return config


def is_config_dir_mesh_file(rel: Path | str) -> bool:
    """Whether ``rel`` (relative to a config directory) is that directory's MeshConfig file."""
    return Path(rel).as_posix() == CONFIG_DIR_FILE


def add_mesh_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mesh-config",
        type=Path,
        default=None,
        help="Istio MeshConfig YAML (or the istio ConfigMap); rootNamespace (default istio-system), "
        "trustDomain (default cluster.local), access logging, OpenTelemetry tracing, meshNetworks and "
        "the traffic defaults (outboundTrafficPolicy, enableAutoMtls, localityLbSetting, "
        "default*ExportTo, trustDomainAliases) are applied",
    )


def mesh_config_from_args(parser: argparse.ArgumentParser, path: Path | None) -> MeshConfig:
    """:func:`load_mesh_config`, a bad file being a usage error (exit 2) naming it."""
    try:
        return load_mesh_config(path)
    except MeshConfigError as exc:
        parser.error(str(exc))
