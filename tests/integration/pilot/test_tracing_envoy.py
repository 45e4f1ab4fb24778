"""Tracing in a real Envoy: a MeshConfig ``opentelemetry`` provider named by a Telemetry makes a
sidecar export one span per request to an OTLP/gRPC collector run by the test, with the
Telemetry's sampling percentage honoured and its custom tags on the spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.ctl.bootstrap import render_bootstrap
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import wait_for_port
from meshplane.shared.testing.otlp import OtlpReceiver, span_attributes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
COLLECTOR = f"otel-collector.{NS}.svc.cluster.local"
OTLP_PORT = 4317


def _registry(
    app_ip: str, port: int, otlp_port: int
) -> tuple[list[registry_pb2.Service], list[registry_pb2.WorkloadInstance]]:
    """``web`` (HTTP) and the collector (gRPC 4317, its one instance the test's receiver)."""
    web = registry_pb2.Service(
        hostname=HOST,
        namespace=NS,
        ports=[registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)],
    )
    collector = registry_pb2.Service(
        hostname=COLLECTOR,
        namespace=NS,
        ports=[registry_pb2.ServicePort(name="grpc-otlp", number=OTLP_PORT, protocol=registry_pb2.GRPC)],
    )
    instances = [
        registry_pb2.WorkloadInstance(
            name="web-1",
            namespace=NS,
            address=app_ip,
            services=[HOST],
            labels={"app": "web"},
            ports={"http": port},
        ),
        registry_pb2.WorkloadInstance(
            name="otel-collector-1",
            namespace=NS,
            address="127.0.0.1",
            services=[COLLECTOR],
            labels={"app": "otel-collector"},
            ports={"grpc-otlp": otlp_port},
        ),
    ]
    return [web, collector], instances


def _hcm_tracing(envoy: EnvoyProcess, listener_port: int) -> list[Any]:
    dump: Any = envoy.config_dump("?resource=dynamic_listeners")
    return [
        flt["typed_config"].get("tracing")
        for item in dump["configs"]
        for lis in [item.get("active_state", {}).get("listener", {})]
        if lis.get("address", {}).get("socket_address", {}).get("port_value") == listener_port
        for chain in lis.get("filter_chains", [])
        for flt in chain.get("filters", [])
        if flt["name"] == "envoy.filters.network.http_connection_manager"
    ]


def _telemetry(kit: Any, percent: float) -> Any:
    tracing = {
        "providers": [{"name": "otel"}],
        "randomSamplingPercentage": percent,
        "customTags": {
            "team": {"literal": {"value": "checkout"}},
            "pod": {"environment": {"name": "POD_NAME", "defaultValue": "unknown"}},
            "user": {"header": {"name": "x-user", "defaultValue": "anonymous"}},
        },
    }
    return kit.vs_config("Telemetry", NS, "tracing", {"tracing": [tracing]}, "telemetry.istio.io")


def test_one_span_per_sampled_request_reaches_the_otlp_collector(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    receiver = OtlpReceiver().start()
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    mesh = tmp_path / "mesh.yaml"
    provider = {
        "name": "otel",
        "opentelemetry": {"service": COLLECTOR, "port": OTLP_PORT, "resourceDetectors": {"environment": {}}},
    }
    mesh.write_text(yaml.safe_dump({"extensionProviders": [provider]}))
    app = kit.App("web", "v1", app_ip, port)
    unsampled = _telemetry(kit, 0)
    bus = kit.publish(
        nats_module.url,
        _registry(app_ip, port, receiver.port),
        [kit.bound_client_sidecar(NS, port, client_ip), unsampled],
    )
    pilot = envoy = None
    try:
        pilot = kit.start_pilot(
            nats_module.url, tmp_path, "pilot-tr", xds=("--xds-plaintext", "--mesh-config", str(mesh))
        )
        opts = kit.proxy_options(
            "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
        )
        admin = kit.free_port()
        opts.admin = f"127.0.0.1:{admin}"
        (tmp_path / "client.yaml").write_text(yaml.safe_dump(render_bootstrap(opts)))
        env = {"POD_NAME": "client-1", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}
        log = tmp_path / "envoy-client.log"
        envoy = EnvoyProcess(
            tmp_path / "client.yaml", admin, extra_args=["--log-path", str(log)], env=env
        ).start()
        assert wait_for_port("127.0.0.1", admin, 20), log.read_text()[-3000:] if log.exists() else ""

        def get(path: str, user: str | None = None) -> int:
            headers = {"host": "web", **({"x-user": user} if user else {})}
            return httpx.get(f"http://{client_ip}:{port}{path}", headers=headers, timeout=5).status_code

        kit.wait_until(lambda: get("/warmup") == 200, 30, "traffic through the sidecar")
        (tracing,) = kit.wait_until(lambda: _hcm_tracing(envoy, port), 20, "the HCM with tracing")
        assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
        assert tracing["random_sampling"] == {}  # 0 %: the default value, left out of the dump
        grpc = tracing["provider"]["typed_config"]["grpc_service"]["envoy_grpc"]
        assert grpc["cluster_name"] == f"outbound|{OTLP_PORT}||{COLLECTOR}"
        for i in range(5):
            assert get(f"/unsampled-{i}") == 200

        sampled = _telemetry(kit, 100)
        kit.assert_valid(sampled)
        bus.put_configs(sampled)
        kit.wait_until(
            lambda: [t["random_sampling"] for t in _hcm_tracing(envoy, port)] == [{"value": 100}],
            20,
            "sampling at 100 %",
        )
        paths = [f"/sampled-{i}" for i in range(5)]
        for path in paths:
            assert get(path, user="ana") == 200

        def spans() -> list[tuple[str, Any]]:
            return [(svc, s) for svc, s in receiver.traces.received() if "/sampled-" in _url(s)]

        got = kit.wait_until(lambda: len(spans()) >= 5 and spans(), 30, "five spans at the collector")
        # one span per request: each path once, from the client sidecar's service
        assert sorted(_url(s).rsplit("/", 1)[-1] for _, s in got) == sorted(p[1:] for p in paths)
        assert {svc for svc, _ in got} == {"client.shop"}
        attrs = span_attributes(got[0][1])
        assert (attrs["team"], attrs["pod"], attrs["user"]) == ("checkout", "client-1", "ana")
        assert attrs["istio.namespace"] == NS and attrs["istio.canonical_service"] == "client"
        # the 0 % requests went before the sampled ones and were never exported
        assert not [s for _, s in receiver.traces.received() if "/unsampled-" in _url(s)]
        resources = _resource_attrs(receiver)
        assert resources.get("deployment.environment") == "test"  # the environment resource detector
        assert envoy.get("/stats?filter=^listener_manager.lds.update_rejected$").strip().endswith(": 0")
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
        receiver.stop()


def _url(span: Any) -> str:
    return span_attributes(span).get("http.url", "")


def _resource_attrs(receiver: OtlpReceiver) -> dict[str, str]:
    return dict(receiver.traces.resources)


def test_envoy_otel_als_access_logs_reach_the_otlp_collector(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    """MeshConfig ``envoyOtelAls`` as the default access-log provider: one OTLP log record per
    request, with the provider's body and attributes, at the collector (the test's receiver)."""
    receiver = OtlpReceiver().start()
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    mesh = tmp_path / "mesh.yaml"
    als = {"service": COLLECTOR, "port": OTLP_PORT, "logName": "shop-logs"}
    als["logFormat"] = {"text": "%REQ(:PATH)% %RESPONSE_CODE%", "labels": {"code": "%RESPONSE_CODE%"}}
    doc = {"extensionProviders": [{"name": "otel-als", "envoyOtelAls": als}]}
    mesh.write_text(yaml.safe_dump({**doc, "defaultProviders": {"accessLogging": ["otel-als"]}}))
    app = kit.App("web", "v1", app_ip, port)
    kit.publish(
        nats_module.url,
        _registry(app_ip, port, receiver.port),
        [kit.bound_client_sidecar(NS, port, client_ip)],
    )
    pilot = envoy = None
    try:
        pilot = kit.start_pilot(
            nats_module.url, tmp_path, "pilot-als", xds=("--xds-plaintext", "--mesh-config", str(mesh))
        )
        opts = kit.proxy_options(
            "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
        )
        envoy = kit.start_envoy(tmp_path, "client", opts)

        def get(path: str) -> int:
            return httpx.get(
                f"http://{client_ip}:{port}{path}", headers={"host": "web"}, timeout=5
            ).status_code

        kit.wait_until(lambda: get("/warmup") == 200, 30, "traffic through the sidecar")
        for i in range(3):
            assert get(f"/logged-{i}") == 200

        def records() -> list[Any]:
            return [r for _, r in receiver.logs.received() if r.body.string_value.startswith("/logged-")]

        got = kit.wait_until(
            lambda: len(records()) >= 3 and records(), 30, "three log records at the collector"
        )
        assert sorted(r.body.string_value for r in got) == [f"/logged-{i} 200" for i in range(3)]
        assert all({a.key: a.value.string_value for a in r.attributes}.get("code") == "200" for r in got)
        assert envoy.stat("listener_manager.lds.update_rejected") == 0
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()
        receiver.stop()
