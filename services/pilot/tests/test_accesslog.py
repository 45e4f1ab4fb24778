"""Access logs on generated HCMs and TCP proxies: MeshConfig's legacy log and Telemetry accessLogging."""

from __future__ import annotations

from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format, struct_pb2

from meshplane.pilot.generators.accesslog import DEFAULT_JSON_FORMAT, DEFAULT_TEXT_FORMAT, not_applied
from meshplane.pilot.generators.filters import HCM, TCP_PROXY
from meshplane.pilot.generators.listeners import inbound_listeners, outbound_listeners
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.meshconfig import parse_mesh_config

NS = "default"
REVIEWS = "reviews.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


def _proxy(kind: str, name: str, ns: str, labels: dict[str, str]) -> Proxy:
    md = struct_pb2.Struct()
    md.update({"LABELS": labels})
    return parse_proxy(f"{kind}~10.1.0.1~{name}.{ns}~{ns}.svc.cluster.local", md)


SIDECAR = _proxy("sidecar", "reviews-v1", NS, {"app": "reviews"})
GATEWAY = _proxy("router", "gw", "istio-system", {"istio": "ingressgateway"})


def telemetry(name: str, spec: dict[str, Any], ns: str = NS) -> Config[Any]:
    return Config.parse("Telemetry", "telemetry.istio.io", "v1", ns, name, spec)


def context(mesh_yaml: str = "", *configs: Config[Any]) -> PushContext:
    services = {
        "reviews": Service(REVIEWS, NS, (Port("http", 9080, "HTTP"),)),
        "db": Service(DB, NS, (Port("tcp", 3306, "TCP"),), addresses=("10.0.0.9",)),
    }
    workloads = {"r": Workload("reviews-v1", NS, "10.1.0.1", {"app": "reviews"}, services=(REVIEWS,))}
    gateway = Config.parse(
        "Gateway",
        "networking.istio.io",
        "v1",
        "istio-system",
        "gw",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        },
    )
    all_configs = {f"{c.kind}/{c.namespace}/{c.name}": c for c in (gateway, *configs)}
    return build_push_context("1", all_configs, services, workloads, mesh=parse_mesh_config(mesh_yaml, "m"))


def loggers(listeners: list[listener_pb2.Listener]) -> dict[str, list[accesslog_pb2.AccessLog]]:
    """``listener/chain/filter`` → its access loggers, for every HCM and TCP proxy."""
    out = {}
    for lis in listeners:
        chains = [*lis.filter_chains, lis.default_filter_chain]
        for i, chain in enumerate(chains):
            for flt in chain.filters:
                msg: Any = {HCM: hcm.HttpConnectionManager, TCP_PROXY: tcp_proxy_pb2.TcpProxy}.get(flt.name)
                if msg is not None:
                    m = msg()
                    flt.typed_config.Unpack(m)
                    out[f"{lis.name}/{i}/{flt.name}"] = list(m.access_log)
    return out


def files(al: list[accesslog_pb2.AccessLog]) -> list[file_pb2.FileAccessLog]:
    out = []
    for a in al:
        assert a.name == "envoy.access_loggers.file"
        f = file_pb2.FileAccessLog()
        a.typed_config.Unpack(f)
        out.append(f)
    return out


def sides(ctx: PushContext, proxy: Proxy = SIDECAR) -> tuple[dict[str, Any], dict[str, Any]]:
    return loggers(outbound_listeners(ctx, proxy)), loggers(inbound_listeners(ctx, proxy))


def test_no_mesh_log_and_no_telemetry_means_no_access_log() -> None:
    out, inbound = sides(context())
    assert out and inbound  # HCMs and TCP proxies exist ...
    assert all(not al for al in (*out.values(), *inbound.values()))  # ... without loggers


def test_mesh_access_log_file_is_on_every_hcm_and_tcp_proxy_with_istios_format() -> None:
    ctx = context("accessLogFile: /dev/stdout\n")
    out, inbound = sides(ctx)
    gateway = loggers(outbound_listeners(ctx, GATEWAY))
    every = {**out, **inbound, **{f"gw:{k}": v for k, v in gateway.items()}}
    assert any(HCM in k for k in every) and any(TCP_PROXY in k for k in every)
    for where, al in every.items():
        (f,) = files(al)
        assert f.path == "/dev/stdout", where
        assert f.log_format.text_format_source.inline_string == DEFAULT_TEXT_FORMAT, where


def test_mesh_json_encoding_and_custom_formats() -> None:
    out, _ = sides(context("accessLogFile: /tmp/a.log\naccessLogEncoding: JSON\n"))
    (f,) = files(next(iter(out.values())))
    assert json_format.MessageToDict(f.log_format.json_format) == dict(DEFAULT_JSON_FORMAT)
    assert f.log_format.json_format_options.sort_properties is False

    custom = (
        'accessLogFile: /tmp/a.log\naccessLogEncoding: JSON\naccessLogFormat: \'{"c": "%RESPONSE_CODE%"}\'\n'
    )
    (f,) = files(next(iter(sides(context(custom))[0].values())))
    assert json_format.MessageToDict(f.log_format.json_format) == {"c": "%RESPONSE_CODE%"}

    text = "accessLogFile: /tmp/a.log\naccessLogFormat: '%REQ_WITHOUT_QUERY(:PATH)% %RESPONSE_CODE%'\n"
    (f,) = files(next(iter(sides(context(text))[0].values())))
    assert f.log_format.text_format_source.inline_string == "%REQ_WITHOUT_QUERY(:PATH)% %RESPONSE_CODE%\n"
    assert [x.name for x in f.log_format.formatters] == ["envoy.formatter.req_without_query"]


def test_telemetry_envoy_provider_in_root_namespace_turns_logs_on_mesh_wide() -> None:
    mesh_default = telemetry(
        "mesh-default", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}, "istio-system"
    )
    ctx = context("accessLogEncoding: JSON\n", mesh_default)
    out, inbound = sides(ctx)
    for al in (*out.values(), *inbound.values()):
        (f,) = files(al)  # the built-in provider: /dev/stdout in MeshConfig's encoding
        assert f.path == "/dev/stdout"
        assert json_format.MessageToDict(f.log_format.json_format) == dict(DEFAULT_JSON_FORMAT)


def test_namespace_disabled_then_workload_selector_enables_again() -> None:
    mesh_default = telemetry(
        "mesh-default", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}, "istio-system"
    )
    off = telemetry("off", {"accessLogging": [{"disabled": True}]})
    ctx = context("accessLogFile: /dev/stdout\n", mesh_default, off)
    out, inbound = sides(ctx)
    assert all(not al for al in (*out.values(), *inbound.values()))
    # ... the mesh-wide one still applies to other namespaces (the gateway in istio-system)
    assert all(files(al) for al in loggers(outbound_listeners(ctx, GATEWAY)).values())

    on = telemetry(
        "reviews", {"selector": {"matchLabels": {"app": "reviews"}}, "accessLogging": [{"disabled": False}]}
    )
    out, _ = sides(context("", mesh_default, off, on))
    assert all(len(files(al)) == 1 for al in out.values())
    other = _proxy("sidecar", "ratings-v1", NS, {"app": "ratings"})  # not selected: still off
    assert all(not al for al in sides(context("", mesh_default, off, on), other)[0].values())


def test_match_mode_server_logs_only_inbound_and_file_providers_from_mesh_config() -> None:
    mesh = (
        "extensionProviders:\n"
        "- name: json-file\n"
        "  envoyFileAccessLog: {path: /tmp/in.log, logFormat: {labels: {code: '%RESPONSE_CODE%'}}}\n"
    )
    server = telemetry(
        "server",
        {
            "accessLogging": [
                {
                    "match": {"mode": "SERVER"},
                    "providers": [{"name": "json-file"}],
                    "filter": {"expression": "response.code >= 400"},
                }
            ]
        },
    )
    out, inbound = sides(context(mesh, server))
    assert all(not al for al in out.values())
    for al in inbound.values():
        (f,) = files(al)
        assert f.path == "/tmp/in.log"
        assert json_format.MessageToDict(f.log_format.json_format) == {"code": "%RESPONSE_CODE%"}
        cel = cel_pb2.ExpressionFilter()
        assert al[0].filter.extension_filter.name == "envoy.access_loggers.extension_filters.cel"
        al[0].filter.extension_filter.typed_config.Unpack(cel)
        assert cel.expression == "response.code >= 400"


def test_default_providers_apply_without_telemetry() -> None:
    out, inbound = sides(context("defaultProviders: {accessLogging: [envoy]}\n"))
    assert all(len(files(al)) == 1 for al in (*out.values(), *inbound.values()))


def test_what_is_not_applied_is_named() -> None:
    mesh = parse_mesh_config(
        "extensionProviders: [{name: otel, envoyHttpAls: {service: c, port: 4317}}]\n", "m"
    )
    t = telemetry(
        "t",
        {
            "tracing": [{"providers": [{"name": "otel"}]}],
            "metrics": [{"providers": [{"name": "prometheus"}]}],
            "accessLogging": [{"providers": [{"name": "envoy"}, {"name": "otel"}]}],
        },
    )
    # the tracing provider is not an opentelemetry one; metrics are warned by validation
    assert not_applied(t, mesh) == ["accessLogging[0].providers[otel]", "tracing[0].providers[otel]"]
    assert not_applied(telemetry("u", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}), mesh) == []
    # a provider meshplane does not write produces no logger (and no error)
    out, _ = sides(context("extensionProviders: [{name: otel, envoyHttpAls: {service: c, port: 4317}}]\n", t))
    assert all(len(files(al)) == 1 for al in out.values())


def test_envoy_otel_als_provider_exports_to_its_service_over_grpc() -> None:
    mesh = (
        "defaultProviders: {accessLogging: [otel]}\n"
        "extensionProviders:\n"
        f"- name: otel\n  envoyOtelAls: {{service: {NS}/{DB}, port: 3306, logName: mine,"
        " logFormat: {labels: {code: '%RESPONSE_CODE%'}}}\n"
    )
    out, inbound = sides(context(mesh))
    all_loggers = [a for al in (*out.values(), *inbound.values()) for a in al]
    assert all_loggers and all(a.name == "envoy.access_loggers.open_telemetry" for a in all_loggers)
    cfg = logs_service_pb2.OpenTelemetryAccessLogConfig()
    assert all_loggers[0].typed_config.Unpack(cfg)
    assert cfg.common_config.grpc_service.envoy_grpc.cluster_name == f"outbound|3306||{DB}"
    assert cfg.common_config.log_name == "mine"
    assert cfg.body.string_value.startswith("[%START_TIME%]")  # Istio's default text line
    assert [(kv.key, kv.value.string_value) for kv in cfg.attributes.values] == [("code", "%RESPONSE_CODE%")]
    # a service the registry does not have: no logger (Pilot logs it), the rest of the config stays
    missing = mesh.replace(f"{NS}/{DB}", "collector.elsewhere")
    out, inbound = sides(context(missing))
    assert out and all(not al for al in (*out.values(), *inbound.values()))
