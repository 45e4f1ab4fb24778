"""MeshConfig's traffic defaults: Istio's defaults, the applied fields out of the warning, bad
values refused naming the field."""

from __future__ import annotations

import pytest

from meshplane.shared.meshconfig import MeshConfigError, parse_mesh_config
from meshplane.shared.meshconfig_traffic import MeshTraffic


def test_defaults_are_istios() -> None:
    traffic = parse_mesh_config("", "mesh.yaml").traffic
    assert traffic == MeshTraffic()
    assert traffic.outbound_traffic_policy == "ALLOW_ANY"


def test_outbound_traffic_policy_is_applied_not_warned() -> None:
    mesh = parse_mesh_config("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n", "mesh.yaml")
    assert mesh.traffic.outbound_traffic_policy == "REGISTRY_ONLY"
    assert "outboundTrafficPolicy" not in mesh.not_applied


def test_enable_auto_mtls_is_applied_not_warned() -> None:
    mesh = parse_mesh_config("enableAutoMtls: false\n", "mesh.yaml")
    assert mesh.traffic.enable_auto_mtls is False
    assert mesh.not_applied == ()
    assert parse_mesh_config("", "mesh.yaml").traffic.enable_auto_mtls is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outboundTrafficPolicy: {mode: DENY}\n", "outboundTrafficPolicy.mode: expected ALLOW_ANY or"),
        ("outboundTrafficPolicy: {egressProxy: {host: x}}\n", "outboundTrafficPolicy: expected {mode:"),
        ("enableAutoMtls: 'no'\n", "enableAutoMtls: expected true or false, got 'no'"),
        ("localityLbSetting: {enabled: maybe}\n", "localityLbSetting.enabled: "),
        ("localityLbSetting: {distibute: []}\n", "localityLbSetting.distibute: "),
        ("defaultServiceExportTo: [Not_A_Ns]\n", "defaultServiceExportTo: expected a list of namespaces"),
        ("defaultDestinationRuleExportTo: '*'\n", "defaultDestinationRuleExportTo: expected a list"),
        ("trustDomainAliases: [a/b]\n", "trustDomainAliases: expected a list of trust domains"),
    ],
)
def test_bad_values_name_the_field(text: str, message: str) -> None:
    with pytest.raises(MeshConfigError, match="mesh.yaml: ") as exc:
        parse_mesh_config(text, "mesh.yaml")
    assert message in str(exc.value)


def test_every_traffic_field_is_parsed_and_applied() -> None:
    mesh = parse_mesh_config(
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenableAutoMtls: false\n"
        "localityLbSetting: {failover: [{from: r1, to: r2}]}\n"
        "defaultServiceExportTo: ['.']\ndefaultVirtualServiceExportTo: ['~']\n"
        "defaultDestinationRuleExportTo: [shop, '*']\ntrustDomainAliases: [old.example]\n",
        "mesh.yaml",
    )
    assert mesh.not_applied == ()
    t = mesh.traffic
    assert t.locality_lb_setting is not None and t.locality_lb_setting.failover is not None
    assert t.locality_lb_setting.failover[0].to == "r2"
    assert (t.default_service_export_to, t.default_virtual_service_export_to) == ((".",), ("~",))
    assert t.default_destination_rule_export_to == ("shop", "*")
    assert t.trust_domain_aliases == ("old.example",)
