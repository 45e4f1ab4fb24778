"""Access logs over OpenTelemetry: MeshConfig ``envoyOtelAls`` providers as Envoy's upstream
``envoy.access_loggers.open_telemetry``, exporting to the provider's service over gRPC (the
cluster ``outbound|<port>||<service>``, which the proxy must be able to reach)."""

from __future__ import annotations

import functools
import logging

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from meshplane.pilot.generators.common import outbound, pack
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext
from meshplane.shared.meshconfig_otelals import OtelAlsProvider

log = logging.getLogger("meshplane.pilot.accesslog")

OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"


def otel_logger(
    ctx: PushContext, proxy: Proxy, name: str, provider: OtelAlsProvider, default_text: str, expression: str
) -> accesslog_pb2.AccessLog | None:
    """The logger for ``provider`` (``default_text``: the body without ``logFormat.text``), or None
    when its service is not in the registry (logged once)."""
    svc = ctx.service(provider.hostname, proxy.namespace)
    if svc is None:
        _warn_missing(name, provider.service)
        return None
    cfg = logs_service_pb2.OpenTelemetryAccessLogConfig()
    common = cfg.common_config
    common.log_name = provider.log_name
    common.transport_api_version = config_source_pb2.ApiVersion.V3
    common.grpc_service.envoy_grpc.cluster_name = outbound(provider.port, "", svc.hostname)
    cfg.body.string_value = (provider.text or default_text).rstrip("\n")
    for key, value in provider.labels:
        cfg.attributes.values.add(key=key, value=common_pb2.AnyValue(string_value=value))
    return filtered(accesslog_pb2.AccessLog(name=OTEL_LOGGER, typed_config=pack(cfg)), expression)


def filtered(logger: accesslog_pb2.AccessLog, expression: str) -> accesslog_pb2.AccessLog:
    """``logger`` logging only what the CEL ``expression`` (Telemetry's ``filter``) accepts."""
    if expression:
        ext = logger.filter.extension_filter
        ext.name = CEL_FILTER
        ext.typed_config.CopyFrom(pack(cel_pb2.ExpressionFilter(expression=expression)))
    return logger


@functools.cache
def _warn_missing(name: str, service: str) -> None:
    log.warning(
        "access-log provider %r: service %s is not in the registry; no OpenTelemetry log", name, service
    )
