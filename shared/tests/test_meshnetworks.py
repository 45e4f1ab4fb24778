"""MeshNetworks: Istio's shape read from MeshConfig (or the istio ConfigMap), checked, and applied."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import yaml

from meshplane.shared.meshconfig import MeshConfigError, load_mesh_config, parse_mesh_config
from meshplane.shared.meshconfig_bus import mesh_config_from_bus, mesh_config_message
from meshplane.shared.meshnetworks import MeshNetworks, Network, NetworkGateway

NETWORKS = {
    "networks": {
        "network1": {
            "endpoints": [{"fromRegistry": "cluster1"}, {"fromCidr": "10.1.0.0/16"}],
            "gateways": [{"address": "192.0.2.10", "port": 15443}],
        },
        "network2": {
            "endpoints": [{"fromCidr": "10.2.0.0/16"}],
            "gateways": [
                {
                    "registryServiceName": "istio-eastwestgateway.istio-system.svc.cluster.local",
                    "port": 15443,
                },
                {"address": "gw.example.com", "port": 15443, "locality": "us-east"},
            ],
        },
    }
}


def test_networks_are_read_and_only_the_gateway_locality_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump({"meshNetworks": NETWORKS}))
    with caplog.at_level(logging.WARNING):
        mesh = load_mesh_config(path)
    assert (
        "not applied" in caplog.text and "meshNetworks.networks.network2.gateways[1].locality" in caplog.text
    )
    assert mesh.not_applied == ("meshNetworks.networks.network2.gateways[1].locality",)
    without = copy.deepcopy(NETWORKS)
    del without["networks"]["network2"]["gateways"][1]["locality"]
    assert parse_mesh_config(yaml.safe_dump({"meshNetworks": without}), "m").not_applied == ()
    assert mesh.mesh_networks == MeshNetworks(
        (
            Network(
                "network1", ("cluster1",), ("10.1.0.0/16",), (NetworkGateway(15443, address="192.0.2.10"),)
            ),
            Network(
                "network2",
                (),
                ("10.2.0.0/16",),
                (
                    NetworkGateway(
                        15443, registry_service_name="istio-eastwestgateway.istio-system.svc.cluster.local"
                    ),
                    NetworkGateway(15443, address="gw.example.com", locality="us-east"),
                ),
            ),
        )
    )


def test_network_of_an_endpoint_registry_first_then_cidr() -> None:
    nets = parse_mesh_config(yaml.safe_dump({"meshNetworks": NETWORKS}), "m").mesh_networks
    assert nets.network_of("10.2.0.5", "cluster1") == "network1"  # fromRegistry wins
    assert nets.network_of("10.2.0.5", "cluster9") == "network2"
    assert nets.network_of("10.1.3.4", "") == "network1"
    assert nets.network_of("172.16.0.1", "") == ""
    assert nets.network_of("db.example.com", "") == ""


def test_istio_configmap_meshnetworks_key_reaches_the_bus() -> None:
    cm = {
        "kind": "ConfigMap",
        "metadata": {"name": "istio"},
        "data": {"mesh": "trustDomain: example.org\n", "meshNetworks": yaml.safe_dump(NETWORKS)},
    }
    mesh, msg = mesh_config_message(yaml.safe_dump(cm), "cm.yaml")
    assert mesh.trust_domain == "example.org"
    assert [n.name for n in mesh.mesh_networks.networks] == ["network1", "network2"]
    assert mesh_config_from_bus(msg).mesh_networks == mesh.mesh_networks


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ("nope", "meshNetworks: expected a mapping with networks"),
        ({"nets": {}}, "meshNetworks: unknown field(s) nets"),
        (
            {"networks": {"n1": {"endpoints": [{"fromCidr": "10.0.0.0/33"}]}}},
            "networks.n1.endpoints[0].fromCidr",
        ),
        ({"networks": {"n1": {"endpoints": [{"fromRegistry": "Bad_Name"}]}}}, "is not a cluster ID"),
        (
            {"networks": {"n1": {"endpoints": [{"fromRegistry": "c1", "fromCidr": "10.0.0.0/8"}]}}},
            "networks.n1.endpoints[0]: expected exactly one of fromRegistry or fromCidr",
        ),
        ({"networks": {"n1": {"gateways": [{"address": "1.2.3.4"}]}}}, "networks.n1.gateways[0].port"),
        ({"networks": {"n1": {"gateways": [{"address": "1.2.3.4", "port": 70000}]}}}, "gateways[0].port"),
        (
            {"networks": {"n1": {"gateways": [{"address": "not an address", "port": 15443}]}}},
            "gateways[0].address",
        ),
        (
            {"networks": {"n1": {"gateways": [{"registryServiceName": "10.0.0.1", "port": 15443}]}}},
            "gateways[0].registryServiceName: '10.0.0.1' is not a service hostname",
        ),
        (
            {"networks": {"n1": {"gateways": [{"port": 15443}]}}},
            "exactly one of address or registryServiceName",
        ),
        ({"networks": {"n1": {"gatways": []}}}, "networks.n1: unknown field(s) gatways"),
    ],
)
def test_bad_networks_are_refused_naming_the_field(networks: object, message: str) -> None:
    with pytest.raises(MeshConfigError, match="mesh.yaml: meshNetworks") as exc:
        parse_mesh_config(yaml.safe_dump({"meshNetworks": networks}), "mesh.yaml")
    assert message in str(exc.value)
