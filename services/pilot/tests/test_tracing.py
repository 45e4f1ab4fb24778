"""Tracing on generated HCMs: Istio's precedence (root < namespace < workload), providers from
MeshConfig, sampling, custom tags, span reporting off, the HTTP exporter and bad providers."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import json_format

from meshplane.pilot.generators.filters import HCM
from meshplane.pilot.generators.listeners import inbound_listeners, outbound_listeners
from meshplane.pilot.model.config import Config, Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy
from meshplane.pilot.model.push_context import PushContext, build_push_context
from meshplane.shared.meshconfig import parse_mesh_config

from .test_accesslog import _proxy
from .test_generators_more import cfg

NS = "default"
REVIEWS = "reviews.default.svc.cluster.local"
COLLECTOR = "otel.observability.svc.cluster.local"
MESH = {
    "extensionProviders": [
        {"name": "otel", "opentelemetry": {"service": COLLECTOR, "port": 4317}},
        {
            "name": "otel-http",
            "opentelemetry": {
                "service": f"observability/{COLLECTOR}",
                "port": 4318,
                "maxTagLength": 99,
                "http": {"path": "v1/traces", "timeout": "2s", "headers": [{"name": "x-k", "value": "v"}]},
            },
        },
        {"name": "nowhere", "opentelemetry": {"service": "absent.example.com", "port": 4317}},
    ]
}


SIDECAR = _proxy("sidecar", "reviews-v1", NS, {"app": "reviews", "version": "v1"})


def telemetry(name: str, tracing: list[dict[str, Any]], ns: str = NS, **extra: Any) -> Config[Any]:
    return Config.parse("Telemetry", "telemetry.istio.io", "v1", ns, name, {"tracing": tracing, **extra})


def context(*configs: Config[Any], mesh: dict[str, Any] | None = None) -> PushContext:
    services = {
        "reviews": Service(REVIEWS, NS, (Port("http", 9080, "HTTP"),)),
        "otel": Service(COLLECTOR, "observability", (Port("grpc", 4317, "GRPC"), Port("http", 4318, "HTTP"))),
    }
    workloads = {"r": Workload("reviews-v1", NS, "10.1.0.1", {"app": "reviews"}, services=(REVIEWS,))}
    all_configs = {f"{c.kind}/{c.namespace}/{c.name}": c for c in configs}
    text = yaml.safe_dump(MESH if mesh is None else mesh)
    return build_push_context("1", all_configs, services, workloads, mesh=parse_mesh_config(text, "m"))


def tracings(listeners: list[listener_pb2.Listener]) -> list[hcm.HttpConnectionManager.Tracing | None]:
    out: list[hcm.HttpConnectionManager.Tracing | None] = []
    for lis in listeners:
        for chain in [*lis.filter_chains, lis.default_filter_chain]:
            for flt in chain.filters:
                if flt.name == HCM:
                    m = hcm.HttpConnectionManager()
                    flt.typed_config.Unpack(m)
                    out.append(m.tracing if m.HasField("tracing") else None)
    return out


def outbound(ctx: PushContext, proxy: Proxy = SIDECAR) -> hcm.HttpConnectionManager.Tracing | None:
    found = {t.SerializeToString() if t else b"": t for t in tracings(outbound_listeners(ctx, proxy))}
    assert len(found) == 1, found  # the same tracing on every outbound HCM
    return next(iter(found.values()))


def otel(t: hcm.HttpConnectionManager.Tracing) -> opentelemetry_pb2.OpenTelemetryConfig:
    cfg = opentelemetry_pb2.OpenTelemetryConfig()
    assert t.provider.typed_config.Unpack(cfg)
    return cfg


def tags(t: hcm.HttpConnectionManager.Tracing) -> dict[str, Any]:
    return {c.tag: json_format.MessageToDict(c) for c in t.custom_tags}


def test_no_telemetry_and_no_default_provider_traces_nothing() -> None:
    assert outbound(context()) is None


def test_default_provider_grpc_exporter_sampling_and_istio_tags() -> None:
    t = outbound(context(mesh={**MESH, "defaultProviders": {"tracing": ["otel"]}}))
    assert t is not None
    assert (t.client_sampling.value, t.overall_sampling.value, t.random_sampling.value) == (100, 100, 1.0)
    assert t.max_path_tag_length.value == 256 and not t.spawn_upstream_span.value
    cfg = otel(t)
    assert cfg.service_name == "reviews.default"
    assert cfg.grpc_service.envoy_grpc.cluster_name == f"outbound|4317||{COLLECTOR}"
    assert cfg.grpc_service.envoy_grpc.authority == COLLECTOR
    assert tags(t)["istio.canonical_service"]["literal"] == {"value": "reviews"}
    assert tags(t)["istio.canonical_revision"]["literal"] == {"value": "v1"}
    assert tags(t)["istio.mesh_id"]["literal"] == {"value": "cluster.local"}


def test_precedence_root_then_namespace_then_workload() -> None:
    root = telemetry(
        "mesh", [{"providers": [{"name": "otel"}], "randomSamplingPercentage": 10}], ns="istio-system"
    )
    ns_wide = telemetry(
        "ns", [{"randomSamplingPercentage": 20, "customTags": {"a": {"literal": {"value": "ns"}}}}]
    )
    workload = telemetry(
        "reviews",
        [
            {
                "customTags": {"b": {"header": {"name": "x-b", "defaultValue": "none"}}},
                "enableIstioTags": False,
            }
        ],
        selector={"matchLabels": {"app": "reviews"}},
    )
    t = outbound(context(root, ns_wide))
    assert t is not None and t.random_sampling.value == 20 and tags(t)["a"]["literal"] == {"value": "ns"}
    t = outbound(context(root, ns_wide, workload))
    assert t is not None and t.random_sampling.value == 20
    # customTags replace the whole map; Istio's tags off
    assert tags(t) == {"b": {"tag": "b", "requestHeader": {"name": "x-b", "defaultValue": "none"}}}
    other = _proxy("sidecar", "ratings-v1", NS, {"app": "ratings"})
    t = outbound(context(root, ns_wide, workload), other)
    assert t is not None and "a" in tags(t)


def test_mode_and_disable_span_reporting() -> None:
    server_off = telemetry(
        "t",
        [
            {"providers": [{"name": "otel"}]},
            {"match": {"mode": "SERVER"}, "disableSpanReporting": True},
        ],
    )
    ctx = context(server_off)
    assert outbound(ctx) is not None
    assert tracings(inbound_listeners(ctx, SIDECAR)) and not any(tracings(inbound_listeners(ctx, SIDECAR)))


def test_http_exporter_headers_and_tag_length() -> None:
    t = outbound(
        context(telemetry("t", [{"providers": [{"name": "otel-http"}], "randomSamplingPercentage": 50}]))
    )
    assert t is not None and t.max_path_tag_length.value == 99 and t.random_sampling.value == 50
    http = otel(t).http_service
    assert http.http_uri.uri == f"http://{COLLECTOR}:4318/v1/traces"
    assert http.http_uri.cluster == f"outbound|4318||{COLLECTOR}"
    assert http.http_uri.timeout.seconds == 2
    assert [(h.header.key, h.header.value) for h in http.request_headers_to_add] == [("x-k", "v")]


def test_request_id_sampling_off_sets_the_uuid_extension() -> None:
    ctx = context(telemetry("t", [{"providers": [{"name": "otel"}], "useRequestIdForTraceSampling": False}]))
    lis = outbound_listeners(ctx, SIDECAR)
    flt = next(f for li in lis for c in li.filter_chains for f in c.filters if f.name == HCM)
    m = hcm.HttpConnectionManager()
    flt.typed_config.Unpack(m)
    rid = uuid_pb2.UuidRequestIdConfig()
    assert m.request_id_extension.typed_config.Unpack(rid)
    assert rid.use_request_id_for_trace_sampling.value is False


def test_unknown_or_unreachable_provider_gives_no_tracing() -> None:
    assert outbound(context(telemetry("t", [{"providers": [{"name": "missing"}]}]))) is None
    assert outbound(context(telemetry("t", [{"providers": [{"name": "nowhere"}]}]))) is None
    assert outbound(context(telemetry("t", [{"providers": [{"name": "envoy"}]}]))) is None  # a log provider


def test_gateways_spawn_upstream_spans() -> None:
    gw = _proxy("router", "gw", "istio-system", {"istio": "ingressgateway", "app": "istio-ingressgateway"})
    server = {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    gateway = cfg(
        "Gateway", "gw", {"selector": {"istio": "ingressgateway"}, "servers": [server]}, "istio-system"
    )
    root = telemetry("mesh", [{"providers": [{"name": "otel"}]}], ns="istio-system")
    t = outbound(context(gateway, root), gw)
    assert t is not None and t.spawn_upstream_span.value
    assert otel(t).service_name == "istio-ingressgateway.istio-system"
