"""Sidecar egress hosts are kept per port, as Istio: an egress listener with a ``port`` imports its
hosts on that port only. Two services each serve both ports; the Sidecar imports ``a`` on port X
and ``b`` on port Y, so through a real Envoy ``a`` answers on X and not on Y, and ``b`` the reverse
(REGISTRY_ONLY: a host not imported on a port gets Envoy's 502)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.proto.bus.v1 import registry_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NS = "shop"


def _registry(
    name: str, ip: str, ports: tuple[int, int]
) -> tuple[registry_pb2.Service, registry_pb2.WorkloadInstance]:
    host = f"{name}.{NS}.svc.cluster.local"
    names = ("http-x", "http-y")
    svc = registry_pb2.Service(
        hostname=host,
        namespace=NS,
        ports=[
            registry_pb2.ServicePort(name=n, number=p, protocol=registry_pb2.HTTP)
            for n, p in zip(names, ports, strict=True)
        ],
    )
    wl = registry_pb2.WorkloadInstance(
        name=f"{name}-1",
        namespace=NS,
        address=ip,
        services=[host],
        labels={"app": name},
        ports=dict(zip(names, ports, strict=True)),
    )
    return svc, wl


def test_egress_hosts_are_imported_per_port(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    base = kit.loopback_base()
    client_ip, a_ip, b_ip = base + "10", base + "20", base + "30"
    x = kit.free_port_on([client_ip, a_ip, b_ip])
    y = kit.free_port_on([client_ip, a_ip, b_ip])
    apps = [kit.App(name, f"port-{p}", ip, p) for name, ip in (("a", a_ip), ("b", b_ip)) for p in (x, y)]
    (svc_a, wl_a), (svc_b, wl_b) = _registry("a", a_ip, (x, y)), _registry("b", b_ip, (x, y))

    def egress(port: int, host: str) -> dict[str, Any]:
        return {
            "port": {"number": port, "protocol": "HTTP", "name": f"http-{port}"},
            "bind": client_ip,
            "captureMode": "NONE",
            "hosts": [f"./{host}.{NS}.svc.cluster.local"],
        }

    sidecar = kit.vs_config(
        "Sidecar",
        NS,
        "client",
        {"egress": [egress(x, "a"), egress(y, "b")], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    )
    kit.publish(nats_module.url, ([svc_a, svc_b], [wl_a, wl_b]), [sidecar])
    pilot = kit.start_pilot(nats_module.url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
    )
    envoy = kit.start_envoy(tmp_path, "client", opts)

    def get(host: str, port: int) -> tuple[int, str]:
        resp = httpx.get(f"http://{client_ip}:{port}/", headers={"host": host}, timeout=5)
        return resp.status_code, resp.headers.get("x-served-by", "")

    try:
        assert kit.wait_until(lambda: get("a", x) == (200, f"a-port-{x}"), 30, "a on port X")
        assert kit.wait_until(lambda: get("b", y) == (200, f"b-port-{y}"), 10, "b on port Y")
        assert get("a", y) == (502, "")  # a is not imported on port Y
        assert get("b", x) == (502, "")  # b is not imported on port X
        assert envoy.stat("listener_manager.lds.update_rejected") == 0
    finally:
        kit.stop_all(envoy, pilot)
        for app in apps:
            app.stop()
