"""A proxyless gRPC client (grpcio's own xDS resolver, ``xds:///``) resolves a mesh service
through Pilot (LDS api_listener → RDS → CDS → EDS) and calls it."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshplane.proto.bus.v1 import registry_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "grpcns"
HOST = f"greeter.{NS}.svc.cluster.local"

CLIENT = """
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
say = channel.unary_unary("/test.Echo/Say")
print(say(b"mesh", timeout=30).decode())
"""


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"hello " + request


def test_proxyless_grpc_client_resolves_and_calls(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    address = kit.loopback_base() + "7"
    port = kit.free_port_on([address])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_say)}
            ),
        )
    )
    server.add_insecure_port(f"{address}:{port}")
    server.start()
    bus = kit.BusWriter(nats_module.url)
    svc_port = registry_pb2.ServicePort(name="grpc", number=port, protocol=registry_pb2.GRPC)
    bus.put_registry(
        [registry_pb2.Service(hostname=HOST, namespace=NS, ports=[svc_port])],
        [
            registry_pb2.WorkloadInstance(
                name="greeter-1",
                namespace=NS,
                address=address,
                services=[HOST],
                ports={"grpc": port},
                labels={"app": "greeter"},
            )
        ],
    )
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot-grpc")
    try:
        bootstrap = {
            "xds_servers": [
                {
                    "server_uri": f"127.0.0.1:{pilot.grpc}",
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }
            ],
            "node": {
                "id": f"sidecar~127.0.0.1~grpc-client.{NS}~{NS}.svc.cluster.local",
                "metadata": {"GENERATOR": "grpc", "NAMESPACE": NS},
            },
        }
        path = tmp_path / "grpc-bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, f"xds:///{HOST}:{port}"],
            env={"GRPC_XDS_BOOTSTRAP": str(path), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "hello mesh"
        assert "NACK" not in pilot.log.read_text()  # every type was accepted by the gRPC client
    finally:
        pilot.stop()
        server.stop(0)
