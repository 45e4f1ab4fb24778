"""Access logs in a real Envoy: MeshConfig's ``accessLogFile`` makes a sidecar write one line per
request in Istio's default format, and a namespace-wide Telemetry with ``disabled: true`` stops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshplane.ctl.bootstrap import render_bootstrap
from meshplane.proto.bus.v1 import registry_pb2
from meshplane.shared.envoyproc import EnvoyProcess
from meshplane.shared.natsserver import wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


def _start_envoy(tmp: Path, opts: Any, admin: int) -> EnvoyProcess:
    """Envoy flushing its access-log files every 50 ms (its default is 10 s)."""
    opts.admin = f"127.0.0.1:{admin}"
    path = tmp / "client.yaml"
    path.write_text(yaml.safe_dump(render_bootstrap(opts)))
    log = tmp / "envoy-client.log"
    args = ["--log-path", str(log), "--file-flush-interval-msec", "50"]
    envoy = EnvoyProcess(path, admin, extra_args=args).start()
    if not wait_for_port("127.0.0.1", admin, 20):
        envoy.stop(10)
        raise AssertionError(
            f"envoy admin did not open; log:\n{log.read_text()[-3000:] if log.exists() else ''}"
        )
    return envoy


def _hcm_loggers(envoy: EnvoyProcess, listener_port: int) -> list[Any]:
    dump: Any = envoy.config_dump("?resource=dynamic_listeners")
    out = []
    for item in dump["configs"]:
        lis = item.get("active_state", {}).get("listener", {})
        if lis.get("address", {}).get("socket_address", {}).get("port_value") != listener_port:
            continue
        for chain in lis.get("filter_chains", []):
            for flt in chain.get("filters", []):
                if flt["name"] == "envoy.filters.network.http_connection_manager":
                    out.append(flt["typed_config"].get("access_log", []))
    return out


class _Mesh:
    """A client sidecar (bound, no iptables) in front of one app, Pilot started with ``mesh_yaml``."""

    def __init__(self, kit: Any, nats_url: str, tmp: Path, mesh_yaml: str, *configs: Any) -> None:
        base = kit.loopback_base()
        self.client_ip, self.app_ip = base + "10", base + "20"
        self.port = kit.free_port_on([self.client_ip, self.app_ip])
        mesh = tmp / "mesh.yaml"
        mesh.write_text(mesh_yaml)
        self.app = kit.App("web", "v1", self.app_ip, self.port)
        svc_port = registry_pb2.ServicePort(name="http", number=self.port, protocol=registry_pb2.HTTP)
        instance = registry_pb2.WorkloadInstance(
            name="web-1",
            namespace=NS,
            address=self.app_ip,
            services=[HOST],
            labels={"app": "web"},
            ports={"http": self.port},
        )
        self.bus = kit.publish(
            nats_url,
            ([registry_pb2.Service(hostname=HOST, namespace=NS, ports=[svc_port])], [instance]),
            [kit.bound_client_sidecar(NS, self.port, self.client_ip), *configs],
        )
        self.pilot: Any = None
        self.envoy: EnvoyProcess | None = None
        try:
            self.pilot = kit.start_pilot(
                nats_url, tmp, "pilot-al", xds=("--xds-plaintext", "--mesh-config", str(mesh))
            )
            pilots = [f"127.0.0.1:{self.pilot.grpc}"]
            opts = kit.proxy_options(
                "sidecar", self.client_ip, "client-1", NS, {"app": "client"}, pilots, False
            )
            self.envoy = _start_envoy(tmp, opts, kit.free_port())
        except BaseException:
            self.stop()
            raise

    def get(self, path: str) -> int:
        url = f"http://{self.client_ip}:{self.port}{path}"
        return httpx.get(url, headers={"host": "web"}, timeout=5).status_code

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop(10)
        if self.pilot is not None:
            self.pilot.stop()
        self.app.stop()


def test_mesh_access_log_file_then_telemetry_disabled(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    m = _Mesh(kit, nats_module.url, tmp_path, f"accessLogFile: {access_log}\n")
    envoy, pilot, bus, get = m.envoy, m.pilot, m.bus, m.get
    assert envoy is not None
    port, app_ip = m.port, m.app_ip

    def logged(path: str) -> list[str]:
        text = access_log.read_text() if access_log.exists() else ""
        return [line for line in text.splitlines() if f'"GET {path} HTTP/1.1"' in line]

    try:
        kit.wait_until(lambda: get("/warmup") == 200, 30, "traffic through the sidecar")
        assert get("/first") == 200
        (line,) = kit.wait_until(lambda: logged("/first"), 10, "the access-log line of /first")
        # Istio's default TEXT format: method, path, protocol, code, flags, details, ..., authority
        assert '"GET /first HTTP/1.1" 200 - via_upstream - "-"' in line, line
        assert f'"web" "{app_ip}:{port}" outbound|{port}||{HOST} ' in line, line

        off = kit.vs_config(
            "Telemetry", NS, "no-logs", {"accessLogging": [{"disabled": True}]}, "telemetry.istio.io"
        )
        kit.assert_valid(off)
        bus.put_configs(off)
        kit.wait_until(lambda: _hcm_loggers(envoy, port) == [[]], 20, "the HCM without access_log")
        assert get("/while-disabled") == 200

        bus.delete_config("Telemetry", NS, "no-logs", "telemetry.istio.io")
        kit.wait_until(
            lambda: [bool(al) for al in _hcm_loggers(envoy, port)] == [True],
            20,
            "the HCM with access_log again",
        )
        assert get("/after") == 200
        kit.wait_until(lambda: logged("/after"), 10, "the access-log line of /after")
        # Lines reach the file in request order: /after is there, so /while-disabled was never logged.
        assert logged("/while-disabled") == []
        assert json.dumps(pilot.get("/debug/syncz")).count("NACK") == 0
    finally:
        m.stop()


def test_root_namespace_telemetry_with_a_json_file_provider(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    """A mesh-wide Telemetry naming an envoyFileAccessLog provider with ``labels: {}``: one JSON
    object per request with Istio's default keys."""
    access_log = tmp_path / "access.json"
    provider = {"name": "json", "envoyFileAccessLog": {"path": str(access_log), "logFormat": {"labels": {}}}}
    mesh = yaml.safe_dump({"extensionProviders": [provider]})
    on = kit.vs_config(
        "Telemetry",
        "istio-system",
        "mesh-default",
        {"accessLogging": [{"providers": [{"name": "json"}]}]},
        "telemetry.istio.io",
    )
    m = _Mesh(kit, nats_module.url, tmp_path, mesh, on)

    def entries() -> list[dict[str, Any]]:
        text = access_log.read_text() if access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    try:
        kit.wait_until(lambda: m.get("/warmup") == 200, 30, "traffic through the sidecar")
        assert m.get("/json") == 200
        (entry,) = kit.wait_until(lambda: [e for e in entries() if e["path"] == "/json"], 10, "the JSON line")
        assert entry["method"] == "GET" and entry["response_code"] == 200 and entry["authority"] == "web"
        assert entry["upstream_cluster"] == f"outbound|{m.port}||{HOST}"
        assert entry["upstream_host"] == f"{m.app_ip}:{m.port}"
    finally:
        m.stop()
