"""Locality load balancing through a real Envoy: a client sidecar in r1/z1 sends everything to
the r1/z1 endpoint, fails over to r1/z2 once outlier detection ejects it, and with ``distribute``
splits traffic by the configured percentages; with ``failoverPriority`` the client's labels, not
its locality, decide which endpoint comes first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.proto.bus.v1 import registry_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"


@dataclass
class Mesh:
    url: str
    apps: dict[str, Any]

    def served_by(self, client: httpx.Client) -> tuple[int, str]:
        resp = client.get(self.url, headers={"host": "web"})
        return resp.status_code, resp.headers.get("x-served-by", "")


@contextmanager
def _mesh(
    kit: Any,
    nats_url: str,
    tmp_path: Path,
    policy: dict[str, Any],
    client_labels: dict[str, str] | None = None,
    zone_labels: dict[str, dict[str, str]] | None = None,
) -> Iterator[Mesh]:
    """Pilot, the ``web`` service with one endpoint in r1/z1 and one in r1/z2 (each with
    ``zone_labels[zone]`` added to its labels), a DestinationRule with ``policy`` and a client Envoy
    in r1/z1 labelled ``client_labels``; everything stopped afterwards."""
    base = kit.loopback_base()
    client_ip, z1_ip, z2_ip = base + "10", base + "21", base + "22"
    port = kit.free_port_on([client_ip, z1_ip, z2_ip])
    apps = {"z1": kit.App("web", "z1", z1_ip, port), "z2": kit.App("web", "z2", z2_ip, port)}
    bus = kit.BusWriter(nats_url)
    svc_port = registry_pb2.ServicePort(name="http", number=port, protocol=registry_pb2.HTTP)
    bus.put_registry(
        [registry_pb2.Service(hostname=HOST, namespace=NS, ports=[svc_port])],
        [
            registry_pb2.WorkloadInstance(
                name=f"web-{zone}",
                namespace=NS,
                address=ip,
                services=[HOST],
                labels={"app": "web", **(zone_labels or {}).get(zone, {})},
                ports={"http": port},
                locality=f"r1/{zone}",
            )
            for zone, ip in (("z1", z1_ip), ("z2", z2_ip))
        ],
    )
    sidecar = kit.bound_client_sidecar(NS, port, client_ip)
    dr = kit.vs_config("DestinationRule", NS, "web", {"host": "web", "trafficPolicy": policy})
    kit.assert_valid(sidecar, dr)
    bus.put_configs(sidecar, dr)
    pilot = kit.start_pilot(nats_url, tmp_path, "pilot")
    opts = kit.proxy_options(
        "sidecar",
        client_ip,
        "client-1",
        NS,
        {"app": "client", **(client_labels or {})},
        [f"127.0.0.1:{pilot.grpc}"],
        True,
    )
    opts.locality = "r1/z1"
    envoy = kit.start_envoy(tmp_path, "client", opts)
    try:
        yield Mesh(f"http://{client_ip}:{port}/", apps)
    finally:
        envoy.stop()
        pilot.stop()
        for app in apps.values():
            app.stop()
        bus.delete_config("DestinationRule", NS, "web")
        bus.delete_config("Sidecar", NS, "client")
        for zone in apps:
            bus.delete_workload(NS, f"web-{zone}")


#: one 5xx ejects an endpoint for the rest of the test
EJECT_AT_ONCE = {
    "consecutive5xxErrors": 1,
    "interval": "1s",
    "baseEjectionTime": "60s",
    "maxEjectionPercent": 100,
}


def _all_to_then_after_ejection(kit: Any, mesh: Mesh, first: str, then: str) -> None:
    """Every request goes to zone ``first``; once its app fails and is ejected, all go to ``then``."""
    with httpx.Client(timeout=5) as client:
        kit.wait_until(lambda: mesh.served_by(client)[0] == 200, 30, "traffic through the sidecar")
    assert _counts(mesh, 40) == Counter({(200, f"web-{first}"): 40})
    mesh.apps[first].fail_all = True
    with httpx.Client(timeout=5) as client:
        kit.wait_until(lambda: mesh.served_by(client) == (200, f"web-{then}"), 20, f"failover to {then}")
    assert _counts(mesh, 40) == Counter({(200, f"web-{then}"): 40})


def _counts(mesh: Mesh, n: int) -> Counter[tuple[int, str]]:
    with httpx.Client(timeout=5) as client:
        return Counter(mesh.served_by(client) for _ in range(n))


def test_failover_prefers_own_zone_then_next_zone_after_ejection(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    policy = {
        "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
        "outlierDetection": EJECT_AT_ONCE,
    }
    with _mesh(kit, nats_module.url, tmp_path, policy) as mesh:
        # healthy: the client's own zone gets everything; once z1 is ejected, the next priority
        # (same region, other zone) does
        _all_to_then_after_ejection(kit, mesh, "z1", "z2")


def test_distribute_splits_traffic_by_percentages(kit: Any, nats_module: Any, tmp_path: Path) -> None:
    policy = {
        "loadBalancer": {
            "simple": "ROUND_ROBIN",
            "localityLbSetting": {
                "enabled": True,
                "distribute": [{"from": "r1/z1/*", "to": {"r1/z1/*": 80, "r1/z2/*": 20}}],
            },
        },
    }
    with _mesh(kit, nats_module.url, tmp_path, policy) as mesh:
        with httpx.Client(timeout=5) as client:
            kit.wait_until(lambda: mesh.served_by(client)[0] == 200, 30, "traffic through the sidecar")
        counts = _counts(mesh, 200)
        assert sum(counts.values()) == counts[(200, "web-z1")] + counts[(200, "web-z2")], counts
        assert 144 <= counts[(200, "web-z1")] <= 176, counts  # 80 % of 200, within ±10 %


def test_failover_priority_prefers_matching_labels_over_own_zone(
    kit: Any, nats_module: Any, tmp_path: Path
) -> None:
    policy = {
        "loadBalancer": {
            "simple": "ROUND_ROBIN",
            "localityLbSetting": {"enabled": True, "failoverPriority": ["tier"]},
        },
        "outlierDetection": EJECT_AT_ONCE,
    }
    # the client sits in r1/z1 but is tier silver, like the r1/z2 endpoint
    tiers = {"z1": {"tier": "gold"}, "z2": {"tier": "silver"}}
    with _mesh(kit, nats_module.url, tmp_path, policy, {"tier": "silver"}, tiers) as mesh:
        _all_to_then_after_ejection(kit, mesh, "z2", "z1")
