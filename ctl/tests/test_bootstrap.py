"""meshctl bootstrap: the rendered Envoy bootstrap, and clear errors for bad options."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.ctl.bootstrap import (
    PILOT_SAN,
    BootstrapError,
    BootstrapOptions,
    pilot_san_matcher,
    render_bootstrap,
)
from meshplane.ctl.main import main
from meshplane.shared.envoyproc import find_envoy

NODE = "sidecar~127.0.0.5~productpage-v1.default~default.svc.cluster.local"


def test_node_metadata_and_every_pilot() -> None:
    boot = render_bootstrap(
        BootstrapOptions(
            node_id=NODE,
            pilots=["10.0.0.1:15010", "10.0.0.2:15010"],
            labels={"app": "productpage"},
            ip="127.0.0.5",
        )
    )
    assert boot["node"]["id"] == NODE
    md = boot["node"]["metadata"]
    assert md["NAMESPACE"] == "default" and md["LABELS"] == {"app": "productpage"}
    assert md["INSTANCE_IPS"] == "127.0.0.5" and md["SERVICE_ACCOUNT"] == "default"
    xds = boot["static_resources"]["clusters"][0]
    assert xds["name"] == "xds-grpc"
    hosts = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for e in xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert hosts == ["10.0.0.1", "10.0.0.2"]
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"


def test_delta_sds_and_admin() -> None:
    boot = render_bootstrap(
        BootstrapOptions(node_id=NODE, delta=True, sds_socket="/run/sds.sock", admin="127.0.0.1:19000")
    )
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    sds = boot["static_resources"]["clusters"][1]
    assert sds["name"] == "sds-grpc"
    assert (
        sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"]
        == "/run/sds.sock"
    )
    assert boot["admin"]["address"]["socket_address"]["port_value"] == 19000


def test_sds_token_path_asks_pilot_for_token_bearing_sds() -> None:
    md = render_bootstrap(
        BootstrapOptions(node_id=NODE, sds_socket="/run/sds.sock", sds_token_path="/run/tokens/istio-token")
    )["node"]["metadata"]
    assert md["SDS_TOKEN_PATH"] == "/run/tokens/istio-token"
    assert md["SDS_UDS_PATH"] == "/run/sds.sock"
    plain = render_bootstrap(BootstrapOptions(node_id=NODE, sds_socket="/run/sds.sock"))["node"]["metadata"]
    assert "SDS_TOKEN_PATH" not in plain and "SDS_UDS_PATH" not in plain


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (BootstrapOptions(node_id="sidecar~1.2.3.4~pod"), "--node-id"),
        (BootstrapOptions(node_id=NODE, pilots=["nope"]), "--pilot"),
        (BootstrapOptions(proxy_type="router", node_id=NODE), "--node-id"),
        (BootstrapOptions(node_id=NODE, admin="127.0.0.1:99999"), "--admin"),
        (BootstrapOptions(node_id=NODE, sds_token_path="tokens/t"), "--sds-token-path"),
        (BootstrapOptions(node_id=NODE, locality="r1//s1"), "--locality"),
        (BootstrapOptions(node_id=NODE, locality="r1/z1/s1/x"), "--locality"),
    ],
)
def test_bad_options_name_the_option(opts: BootstrapOptions, message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        render_bootstrap(opts)


def test_locality_sets_the_node_locality() -> None:
    boot = render_bootstrap(BootstrapOptions(node_id=NODE, locality="us-east1/us-east1-b"))
    assert boot["node"]["locality"] == {"region": "us-east1", "zone": "us-east1-b"}
    assert "locality" not in render_bootstrap(BootstrapOptions(node_id=NODE))["node"]


def test_xds_retry_cap_sets_the_ads_backoff_only_when_asked() -> None:
    def ads_grpc(opts: BootstrapOptions) -> dict[str, object]:
        ads = render_bootstrap(opts)["dynamic_resources"]["ads_config"]
        service: dict[str, object] = ads["grpc_services"][0]
        return service

    assert ads_grpc(BootstrapOptions()) == {"envoy_grpc": {"cluster_name": "xds-grpc"}}  # Envoy's default
    backoff = {"base_interval": "0.25s", "max_interval": "1.0s"}
    assert ads_grpc(BootstrapOptions(xds_retry_max=1.0))["envoy_grpc"] == {
        "cluster_name": "xds-grpc",
        "retry_policy": {"retry_back_off": backoff},
    }


def test_cli_writes_yaml_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "envoy.yaml"
    code = main(
        [
            "bootstrap",
            "--type",
            "router",
            "--node-id",
            "router~10.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local",
            "--pilot",
            "127.0.0.1:15010",
            "--namespace",
            "istio-system",
            "--labels",
            "istio=ingressgateway",
            "--xds-plaintext",
            "--revision",
            "canary",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    text = out.read_text()
    boot = yaml.safe_load(text)
    assert boot["node"]["metadata"]["LABELS"] == {"istio": "ingressgateway"}
    assert boot["node"]["metadata"]["ISTIO_REVISION"] == "canary"  # Istio's node metadata name
    assert "&id" not in text and "*id" not in text  # no YAML anchors: the file reads as written
    sds = ["bootstrap", "--sds-socket", str(tmp_path / "sds.sock"), "--sds-token-path", "/t", "-o", str(out)]
    assert main(sds) == 0  # the SDS cluster shares the xds-grpc cluster's protocol options
    text = out.read_text()
    assert "&id" not in text and "*id" not in text
    clusters = yaml.safe_load(text)["static_resources"]["clusters"]
    options = [c["typed_extension_protocol_options"] for c in clusters]
    assert len(options) == 2 and options[0] == options[1]
    assert main(["bootstrap", "--labels", "novalue"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_health_port_serves_only_healthz_ready_from_envoys_own_readiness() -> None:
    plain = render_bootstrap(BootstrapOptions())
    assert "listeners" not in plain["static_resources"]
    assert "initial_fetch_timeout" not in plain["dynamic_resources"]["lds_config"]
    boot = render_bootstrap(BootstrapOptions(health_port=15021, admin="127.0.0.1:15000"))
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 15021}}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"path": "/healthz/ready"}  # nothing else of the admin is exposed
    assert route["route"]["cluster"] == "health-admin" and route["route"]["prefix_rewrite"] == "/ready"
    admin = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "health-admin")
    (endpoint,) = admin["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 15000}
    }
    # ready means configured by Pilot: the first LDS/CDS wait for it (Istio's 0s)
    for source in ("lds_config", "cds_config"):
        assert boot["dynamic_resources"][source]["initial_fetch_timeout"] == "0s"
    with pytest.raises(BootstrapError, match="--health-port: expected 1..65535, got 70000"):
        render_bootstrap(BootstrapOptions(health_port=70000))


def test_stats_port_serves_only_prometheus_stats_with_istios_tags() -> None:
    boot = render_bootstrap(BootstrapOptions(health_port=15021, stats_port=15090, admin="127.0.0.1:15000"))
    health, stats = boot["static_resources"]["listeners"]
    assert health["name"] == "health-15021"
    assert stats["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 15090}}
    manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route == {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}
    admin = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "prometheus_stats")
    (endpoint,) = admin["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 15000
    tags = {t["tag_name"]: t["regex"] for t in boot["stats_config"]["stats_tags"]}
    assert boot["stats_config"]["use_all_default_tags"] is False and "cluster_name" in tags
    assert "listeners" not in render_bootstrap(BootstrapOptions())["static_resources"]
    with pytest.raises(BootstrapError, match="--stats-port: expected 1..65535, got -1"):
        render_bootstrap(BootstrapOptions(stats_port=-1))


def test_cli_xds_is_mutual_tls_unless_plaintext_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default the xds-grpc cluster presents the SDS workload certificate and accepts only
    Pilot's SPIFFE ID, chained to ROOTCA; with a token path, SDS goes to the node agent with it.
    Envoy itself accepts the result (``--mode validate``)."""
    out = tmp_path / "envoy.yaml"
    sock = str(tmp_path / "sds.sock")
    assert main(["bootstrap", "--sds-socket", sock, "-o", str(out)]) == 0
    checked = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    xds = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]
    assert _pilot_ports(xds) == [15012]  # Istio's xDS-over-TLS port
    context = xds["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2"]  # gRPC servers require it
    assert context["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    combined = context["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    san = combined["default_validation_context"]["match_typed_subject_alt_names"]
    # Pilot's service account in any trust domain (a MeshConfig trustDomain change keeps xDS up)
    assert san == [{"san_type": "URI", "matcher": pilot_san_matcher(PILOT_SAN)}]
    regex = re.compile(san[0]["matcher"]["safe_regex"]["regex"])
    assert regex.match("spiffe://cluster.local/ns/meshplane-system/sa/pilot")
    assert regex.match("spiffe://corp.example/ns/meshplane-system/sa/pilot")
    assert not regex.match("spiffe://corp.example/ns/meshplane-system/sa/pilot-impostor")
    assert not regex.match("spiffe://a/b/ns/meshplane-system/sa/pilot")
    assert not regex.match("spiffe://corp.example/ns/other/sa/pilot")
    assert pilot_san_matcher("spiffe://td/ns/x/sa/y") == {"exact": "spiffe://td/ns/x/sa/y"}
    source = combined["validation_context_sds_secret_config"]["sds_config"]["api_config_source"]
    assert source["grpc_services"] == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]

    # a per-node agent: the same secrets, fetched with the workload's token (Envoy's --mode
    # validate crashes on Google gRPC sources, so only the shape is checked here; the per-node
    # SDS tests run that source in real Envoys)
    assert main(["bootstrap", "--sds-socket", sock, "--sds-token-path", "/var/t", "-o", str(out)]) == 0
    xds = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]
    combined = xds["transport_socket"]["typed_config"]["common_tls_context"]["combined_validation_context"]
    google = combined["validation_context_sds_secret_config"]["sds_config"]["api_config_source"]
    google = google["grpc_services"][0]["google_grpc"]
    assert google["target_uri"] == f"unix:{sock}"
    plugin = google["call_credentials"][0]["from_plugin"]["typed_config"]
    assert plugin["secret_data"] == {"filename": "/var/t"}

    assert main(["bootstrap", "--sds-socket", sock, "--xds-plaintext", "-o", str(out)]) == 0
    plain = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]
    assert "transport_socket" not in plain
    assert _pilot_ports(plain) == [15010]  # Istio's plaintext xDS port

    assert main(["bootstrap", "-o", str(out)]) == 2  # mutual TLS needs the SDS socket's certificate
    assert "--sds-socket: required for mutual TLS to Pilot (or --xds-plaintext)" in capsys.readouterr().err
    assert main(["bootstrap", "--sds-socket", sock, "--pilot-san", "pilot.example", "-o", str(out)]) == 2
    assert "--pilot-san: expected Pilot's spiffe:// ID" in capsys.readouterr().err


def _pilot_ports(cluster: dict[str, Any]) -> list[int]:
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints]
