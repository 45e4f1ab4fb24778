"""Pilot's flags: debug HTTP local-only by default, ADS mutual TLS unless plaintext is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.pilot.generators.security.peer_authn import mtls_mode
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.model import workload_entry as we
from meshplane.pilot.model.config import Config
from meshplane.pilot.model.proxy import parse_proxy
from meshplane.pilot.settings import parse_args


def test_defaults_keep_debug_local_and_take_the_certificate_from_citadel() -> None:
    s = parse_args(["--ca-addr", "citadel:8060"], {})
    assert (s.http_host, s.http_port) == ("127.0.0.1", 15014)  # monitoring
    assert (s.debug_host, s.debug_port) == ("127.0.0.1", 8080)  # every /debug: Istio's localhost:8080
    assert (s.grpc_host, s.grpc_port) == ("0.0.0.0", 15012)  # Istio's TLS xDS port
    assert not s.xds_plaintext
    assert (s.ca_addr, s.ca_root) == ("citadel:8060", "/var/run/secrets/istio/root-cert.pem")
    assert s.token_file == "/var/run/secrets/tokens/istio-token"


def test_plaintext_ads_defaults_to_istios_plaintext_port() -> None:
    assert parse_args(["--xds-plaintext"], {}).grpc_port == 15010
    assert parse_args(["--xds-plaintext", "--grpc-addr", "127.0.0.1:0"], {}).grpc_port == 0
    assert parse_args(["--ca-addr", "c:1", "--grpc-addr", ":15011"], {}).grpc_port == 15011


def test_plaintext_only_when_asked() -> None:
    assert parse_args(["--xds-plaintext"], {}).xds_plaintext
    files = parse_args(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"], {})
    assert not files.xds_plaintext and files.tls_cert == "c.pem"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "ADS is served over mutual TLS: give --ca-addr"),
        (["--xds-plaintext", "--ca-addr", "c:1"], "--xds-plaintext and --ca-addr: give one, not several"),
        (["--tls-cert", "c.pem"], "--tls-cert needs --tls-key and --tls-client-ca"),
        (["--xds-plaintext", "--debug-addr", "local"], "--debug-addr: expected HOST:PORT, got 'local'"),
        (["--xds-plaintext", "--grpc-addr", "x:99999"], "--grpc-addr: port out of range in 'x:99999'"),
    ],
)
def test_bad_flags_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, {})
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_root_namespace_comes_from_mesh_config(tmp_path: Path) -> None:
    """A mesh-wide PeerAuthentication applies from MeshConfig's rootNamespace, not istio-system."""
    assert parse_args(["--xds-plaintext"], {}).root_namespace == "istio-system"  # Istio's default
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("rootNamespace: meshplane-system\n")
    s = parse_args(["--xds-plaintext", "--mesh-config", str(mesh)], {})
    assert s.root_namespace == "meshplane-system"
    strict = Config.parse(
        "PeerAuthentication",
        "security.istio.io",
        "v1",
        "meshplane-system",
        "default",
        {"mtls": {"mode": "STRICT"}},
    )
    for root, mode in (("meshplane-system", "STRICT"), ("istio-system", "PERMISSIVE")):
        state = State(root)
        state.configs["pa"] = strict
        assert mtls_mode(state.snapshot("v1"), "bookinfo", {"app": "reviews"}, 9080) == mode, root


def test_a_bad_mesh_config_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("rootNamespace: 42\n")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--xds-plaintext", "--mesh-config", str(mesh)], {})
    assert exc.value.code == 2
    assert (
        f"--mesh-config {mesh}: rootNamespace: expected a Kubernetes namespace name"
        in capsys.readouterr().err
    )


def test_workload_entry_settings_have_istios_names_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse_args(["--xds-plaintext"], {})
    assert s.enable_workload_entry and s.autoregistration and s.health_checks
    assert s.workload_entry_grace_period == 10.0
    off = parse_args(["--xds-plaintext"], {"PILOT_ENABLE_WORKLOAD_ENTRY": "false"})
    # the umbrella switch turns off what the finer switches would keep on
    assert not off.enable_workload_entry and not off.autoregistration and not off.health_checks
    finer = {"PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS": "0", "PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": "1m"}
    only_registration = parse_args(["--xds-plaintext"], finer)
    assert only_registration.autoregistration and not only_registration.health_checks
    assert only_registration.workload_entry_grace_period == 60.0
    with pytest.raises(SystemExit) as exc:
        parse_args(["--xds-plaintext"], {"PILOT_ENABLE_WORKLOAD_ENTRY": "maybe"})
    assert exc.value.code == 2
    assert "PILOT_ENABLE_WORKLOAD_ENTRY: expected true or false, got 'maybe'" in capsys.readouterr().err


def test_workload_entries_off_drops_them_from_endpoints() -> None:
    spec = {"address": "10.0.0.9", "labels": {"app": "db"}, "ports": {"tcp": 3306}}
    we = Config.parse("WorkloadEntry", "networking.istio.io", "v1", "vms", "db-1", spec)
    for enabled, expected in ((True, ["10.0.0.9"]), (False, [])):
        state = State(workload_entries=enabled)
        state.configs["we"] = we
        assert [w.address for w in state.snapshot("v1").workloads] == expected


def test_health_checks_off_serves_entries_whatever_their_health() -> None:
    proxy = parse_proxy("sidecar~10.0.0.5~vm-1.vms~vms.svc.cluster.local", None)
    group = Config.parse("WorkloadGroup", "networking.istio.io", "v1", "vms", "db", {"template": {}})
    entry = we.entry_from_group(group, proxy, "db-10.0.0.5")  # type: ignore[arg-type]
    entry.entry.annotations[we.HEALTH_CHECKS_ENABLED] = "true"  # and no Healthy condition yet
    for checks, served in ((True, False), (False, True)):
        state = State(health_checks=checks)
        state.put_registered("k", entry)
        assert ("k" in state.registered_workloads) is served


def test_multicluster_flags_have_istios_cluster_id_and_default_domains() -> None:
    s = parse_args(["--xds-plaintext"], {})
    assert (s.cluster_id, s.remote_clusters, s.remote_stale_after) == ("Kubernetes", (), 30.0)
    s = parse_args(
        [
            "--xds-plaintext",
            "--remote-cluster",
            "cluster2",
            "--remote-cluster",
            "east=east-js",
            "--remote-stale-after",
            "5s",
        ],
        {"CLUSTER_ID": "cluster1"},
    )
    assert s.cluster_id == "cluster1"
    assert [(r.cluster_id, r.domain) for r in s.remote_clusters] == [
        ("cluster2", "cluster2"),
        ("east", "east-js"),
    ]
    assert s.remote_stale_after == 5.0
    assert parse_args(["--xds-plaintext", "--cluster-id", "c9"], {"CLUSTER_ID": "c1"}).cluster_id == "c9"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--remote-cluster", "c2="], "--remote-cluster 'c2=': expected ID or ID=DOMAIN"),
        (["--remote-cluster", "c.2"], "cluster ID 'c.2' may hold only letters, digits, '-' and '_'"),
        (["--remote-cluster", "c2", "--remote-cluster", "c2"], "--remote-cluster c2: named twice"),
        (["--cluster-id", "c1", "--remote-cluster", "c1"], "or this Pilot's own --cluster-id"),
        (["--remote-stale-after", "soon"], "--remote-stale-after: expected a duration such as 100ms"),
        (["--remote-stale-after", "0s"], "--remote-stale-after '0s': must be positive"),
    ],
)
def test_bad_multicluster_flags_exit_2_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--xds-plaintext", *argv], {})
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
