"""Access logs on every HTTP connection manager and TCP proxy, as Istio chooses them.

Which loggers a listener gets (Istio's ``Telemetries.AccessLogging``): the Telemetry objects that
apply to the proxy, in order (the root namespace's namespace-wide one, the proxy namespace's
namespace-wide one, then those whose ``selector`` matches the proxy's labels), have their
``accessLogging`` entries merged for the listener's mode (sidecar inbound = SERVER, sidecar outbound
and gateways = CLIENT). With no such entry and no ``defaultProviders.accessLogging`` in MeshConfig,
MeshConfig's legacy ``accessLogFile`` applies instead. Providers meshplane writes: the file provider
(``envoyFileAccessLog``, the built-in ``envoy`` included). Other provider types are warned about at
MeshConfig load and produce no logger here. The Telemetry selection here is also tracing's
(:mod:`.tracing`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.formatter.req_without_query.v3 import req_without_query_pb2

from meshplane.pilot.generators.accesslog_otel import filtered, otel_logger
from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.filters import HCM, TCP_PROXY
from meshplane.pilot.model.config import Config, labels_match
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.proxyversion import ACCESS_LOG_OPERATORS_1_40, ACCESS_LOG_OPERATORS_1_40_NAMES
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.config import models
from meshplane.shared.config.models.telemetry import AccessLogging, WorkloadMode
from meshplane.shared.meshconfig import FileLogProvider, MeshConfig

log = logging.getLogger("meshplane.pilot.accesslog")

FILE_LOGGER = "envoy.access_loggers.file"
REQ_WITHOUT_QUERY = "envoy.formatter.req_without_query"

#: Istio's default TEXT access-log line (EnvoyTextLogFormat)
DEFAULT_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

#: Istio's default JSON access-log map (EnvoyJSONLogFormatIstio), in Istio's key order
DEFAULT_JSON_FORMAT: tuple[tuple[str, str], ...] = (
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)


_NEW_OPERATORS = re.compile("%(" + "|".join(ACCESS_LOG_OPERATORS_1_40_NAMES) + ")%")


def for_older_envoy(text: str) -> str:
    """``text`` with the command operators older Envoys refuse written as ``-`` (gated feature
    ``access-log-operators-1.40``)."""
    replaced = _NEW_OPERATORS.sub("-", text)
    if replaced != text:
        _warn_gated(tuple(sorted(set(_NEW_OPERATORS.findall(text)))))
    return replaced


@functools.cache
def _warn_gated(operators: tuple[str, ...]) -> None:
    log.warning(
        "access-log format uses %s; proxies older than Envoy %s (Istio %s) get '-' in its place",
        ", ".join(f"%{o}%" for o in operators),
        ACCESS_LOG_OPERATORS_1_40.envoy,
        ACCESS_LOG_OPERATORS_1_40.istio,
    )


# ---- translation to Envoy ---------------------------------------------------------------------
def file_logger(
    path: str,
    text: str | None = None,
    labels: Sequence[tuple[str, str]] | None = None,
    omit_empty: bool = False,
    expression: str = "",
    older_envoy: bool = False,
) -> accesslog_pb2.AccessLog:
    """A file access logger: TEXT lines (``text``; a newline is appended if missing) or JSON lines
    (``labels``; empty = Istio's built-in map); a CEL ``expression`` filters what is logged;
    ``older_envoy``: for a proxy without the 1.40 command operators."""
    cfg = file_pb2.FileAccessLog(path=path)
    fmt = cfg.log_format
    if labels is not None:
        pairs = labels or DEFAULT_JSON_FORMAT
        if older_envoy:
            pairs = tuple((k, for_older_envoy(v)) for k, v in pairs)
        fmt.json_format.update(dict(pairs))
        fmt.json_format_options.sort_properties = False
        used = "".join(v for _, v in pairs)
    else:
        line = text or DEFAULT_TEXT_FORMAT
        line = for_older_envoy(line) if older_envoy else line
        fmt.text_format_source.inline_string = line if line.endswith("\n") else line + "\n"
        used = line
    fmt.omit_empty_values = omit_empty
    if "%REQ_WITHOUT_QUERY" in used:
        fmt.formatters.add(name=REQ_WITHOUT_QUERY).typed_config.CopyFrom(
            pack(req_without_query_pb2.ReqWithoutQuery())
        )
    return filtered(accesslog_pb2.AccessLog(name=FILE_LOGGER, typed_config=pack(cfg)), expression)


def mesh_logger(
    mesh: MeshConfig, path: str, expression: str = "", older_envoy: bool = False
) -> accesslog_pb2.AccessLog:
    """A file logger in MeshConfig's ``accessLogEncoding``/``accessLogFormat`` (Istio's
    FileAccessLogFromMeshConfig)."""
    if mesh.access_log_encoding == "JSON":
        labels: tuple[tuple[str, str], ...] = ()
        if mesh.access_log_format:
            try:
                parsed = json.loads(mesh.access_log_format)
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
                labels = tuple((str(k), str(v)) for k, v in parsed.items())
            except ValueError as exc:
                log.error("MeshConfig accessLogFormat is not a JSON object (%s); using the default map", exc)
        return file_logger(path, labels=labels, expression=expression, older_envoy=older_envoy)
    return file_logger(path, mesh.access_log_format or None, expression=expression, older_envoy=older_envoy)


def provider_logger(
    mesh: MeshConfig, name: str, provider: FileLogProvider, expression: str, older_envoy: bool = False
) -> accesslog_pb2.AccessLog:
    if name == "envoy" and provider.follows_mesh:
        return mesh_logger(mesh, provider.path, expression, older_envoy)
    return file_logger(
        provider.path, provider.text, provider.labels, provider.omit_empty_values, expression, older_envoy
    )


# ---- Telemetry selection and merge ------------------------------------------------------------
def applicable_telemetries(ctx: PushContext, proxy: Proxy) -> list[Config[models.Telemetry]]:
    """Root namespace-wide, then proxy namespace-wide (the first of each by name), then every
    Telemetry in the proxy's namespace whose selector matches its labels."""
    telemetries = ctx.of_kind(models.Telemetry)
    if not telemetries:
        return []  # the common case, asked per proxy and listener class on every push

    def namespace_wide(ns: str) -> Config[models.Telemetry] | None:
        return next(
            (t for t in telemetries if t.namespace == ns and not t.spec.selector and not _targets(t)), None
        )

    out = [c for c in (namespace_wide(ctx.root_namespace),) if c is not None]
    if proxy.namespace != ctx.root_namespace:
        out += [c for c in (namespace_wide(proxy.namespace),) if c is not None]
    for t in telemetries:
        selector = t.spec.selector
        matched = selector and selector.match_labels and labels_match(selector.match_labels, proxy.labels)
        if t.namespace == proxy.namespace and matched:
            out.append(t)
    return out


def _targets(t: Config[models.Telemetry]) -> bool:
    return bool(t.spec.target_refs or t.spec.target_ref)


def _matches(entry: AccessLogging, mode: WorkloadMode) -> bool:
    wanted = entry.match.mode if entry.match and entry.match.mode else WorkloadMode.CLIENT_AND_SERVER
    return wanted in (WorkloadMode.CLIENT_AND_SERVER, mode)


def merged_providers(
    levels: Sequence[Sequence[AccessLogging]], defaults: Sequence[str], mode: WorkloadMode
) -> dict[str, str] | None:
    """Provider name → CEL filter ("" none) of the enabled providers (Istio's mergeLogs), or None
    when no level has accessLogging entries (the legacy MeshConfig log applies)."""
    levels = [lv for lv in levels if lv]
    if not levels:
        return {name: "" for name in defaults} if defaults else None
    in_scope: list[str] = list(defaults)
    filters: dict[str, str] = {}
    for level in levels:
        named: list[str] = []
        for entry in level:
            if not _matches(entry, mode):
                continue
            names = _names(entry)
            named += names
            for name in names:
                filters[name] = (entry.filter.expression or "") if entry.filter else ""
        if named:
            in_scope = named
    result: dict[str, str | None] = {}
    parent: list[str] = list(defaults)
    for level in levels:
        for entry in level:
            if not _matches(entry, mode):
                continue
            names = _names(entry) or parent
            parent = names
            for name in names:
                if name in in_scope:
                    result[name] = None if entry.disabled else filters.get(name, "")
    return {name: f for name, f in sorted(result.items()) if f is not None}


def _names(entry: AccessLogging) -> list[str]:
    return [p.name for p in entry.providers or () if p.name]


def access_loggers(ctx: PushContext, proxy: Proxy, mode: WorkloadMode) -> list[accesslog_pb2.AccessLog]:
    """The loggers of a listener of ``mode`` on ``proxy``."""
    mesh = ctx.mesh
    levels = [t.spec.access_logging or [] for t in applicable_telemetries(ctx, proxy)]
    chosen = merged_providers(levels, mesh.default_access_log_providers, mode)
    older = not proxy.supports(ACCESS_LOG_OPERATORS_1_40)
    if chosen is None:
        return [mesh_logger(mesh, mesh.access_log_file, older_envoy=older)] if mesh.access_log_file else []
    out = []
    for name, expression in chosen.items():
        provider = mesh.file_log_provider(name)
        if provider is not None:
            out.append(provider_logger(mesh, name, provider, expression, older))
        elif (als := mesh.otel_als_provider(name)) is not None:
            text = for_older_envoy(DEFAULT_TEXT_FORMAT) if older else DEFAULT_TEXT_FORMAT
            if (logger := otel_logger(ctx, proxy, name, als, text, expression)) is not None:
                out.append(logger)
        else:
            _warn_no_provider(name)
    return out


@functools.cache
def _warn_no_provider(name: str) -> None:
    """Once per provider name (generation runs per push and listener)."""
    log.warning(
        "access-log provider %r: not an envoyFileAccessLog or envoyOtelAls provider of MeshConfig; "
        "not applied by meshplane",
        name,
    )


def not_applied(cfg: Config[models.Telemetry], mesh: MeshConfig) -> list[str]:
    """Providers a Telemetry names that MeshConfig does not define as a kind meshplane writes
    (named in a warning when Pilot receives it). What does not depend on MeshConfig is warned by
    validation (``meshplane.shared.config.rules.telemetry``)."""
    spec = cfg.spec
    out = []
    for i, entry in enumerate(spec.access_logging or ()):
        unknown = [
            n for n in _names(entry) if not mesh.file_log_provider(n) and not mesh.otel_als_provider(n)
        ]
        out += [f"accessLogging[{i}].providers[{name}]" for name in unknown]
    for i, tracing in enumerate(spec.tracing or ()):
        names = [p.name for p in tracing.providers or () if p.name]
        out += [f"tracing[{i}].providers[{name}]" for name in names if not mesh.tracing_provider(name)]
    return out


# ---- applying to listeners --------------------------------------------------------------------
def apply_access_logs(
    ctx: PushContext, proxy: Proxy, listeners: Iterable[listener_pb2.Listener], mode: WorkloadMode
) -> None:
    """Set ``access_log`` on every HCM and TCP proxy of ``listeners``."""
    loggers = access_loggers(ctx, proxy, mode)
    if not loggers:
        return  # generated filters carry none: nothing to unpack (the common case, kept cheap)
    for flt in network_filters(listeners):
        if flt.name == HCM:
            _set(flt, hcm.HttpConnectionManager(), loggers)
        elif flt.name == TCP_PROXY:
            _set(flt, tcp_proxy_pb2.TcpProxy(), loggers)


def network_filters(listeners: Iterable[listener_pb2.Listener]) -> Iterator[lc.Filter]:
    """Every network filter of every filter chain (the default chain included) of ``listeners``."""
    for lis in listeners:
        chains = list(lis.filter_chains)
        if lis.HasField("default_filter_chain"):
            chains.append(lis.default_filter_chain)
        for chain in chains:
            yield from chain.filters


def _set(
    flt: lc.Filter,
    msg: hcm.HttpConnectionManager | tcp_proxy_pb2.TcpProxy,
    loggers: list[accesslog_pb2.AccessLog],
) -> None:
    typed = flt.typed_config
    if not typed.Unpack(msg):
        return
    del msg.access_log[:]
    msg.access_log.extend(loggers)
    typed.CopyFrom(pack(msg))
