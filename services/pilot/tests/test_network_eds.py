"""Network-aware EDS: endpoints carry their network and cluster; other networks are reached
through their gateways (Istio's EndpointsByNetworkFilter)."""

from __future__ import annotations

from meshplane.pilot.model.config import Port, Service, workload_from_bus
from meshplane.pilot.model.push_context import build_push_context
from meshplane.proto.bus.v1 import registry_pb2

NS = "default"
WEB = "web.default.svc.cluster.local"


def _instance(name: str, address: str, network: str = "", **labels: str) -> registry_pb2.WorkloadInstance:
    return registry_pb2.WorkloadInstance(
        name=name, namespace=NS, address=address, network=network, labels=labels, services=[WEB]
    )


def test_endpoints_carry_the_workload_network_else_its_label() -> None:
    web = Service(WEB, NS, (Port("http", 80, "HTTP"),))
    workloads = {
        "a": workload_from_bus(_instance("a", "10.1.0.1", "net-a", **{"topology.istio.io/network": "no"})),
        "b": workload_from_bus(_instance("b", "10.2.0.1", **{"topology.istio.io/network": "net-b"})),
        "c": workload_from_bus(_instance("c", "10.3.0.1")),
    }
    ctx = build_push_context("1", {}, {WEB: web}, workloads)
    got = {e.address: (e.network, e.cluster_id) for e in ctx.endpoints(WEB, NS, 80)}
    assert got == {"10.1.0.1": ("net-a", ""), "10.2.0.1": ("net-b", ""), "10.3.0.1": ("", "")}
