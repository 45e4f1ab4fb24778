"""`meshctl bootstrap` reads the proxy's ProxyConfig (``--proxy-config``, env ``PROXY_CONFIG``)
and its control-plane address (``--pilot`` > ``discoveryAddress`` > env ``ISTIOD_ADDR``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.ctl.main import main
from meshplane.shared.envoyproc import find_envoy


def bootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str
) -> dict[str, Any]:
    for name in ("PROXY_CONFIG", "ISTIOD_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "envoy.yaml"
    assert main(["bootstrap", "--xds-plaintext", "-o", str(out), *args]) == 0
    checked = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr  # Envoy accepts it
    boot: dict[str, Any] = yaml.safe_load(out.read_text())
    return boot


def pilots(boot: dict[str, Any]) -> list[str]:
    (xds,) = (c for c in boot["static_resources"]["clusters"] if c["name"] == "xds-grpc")
    endpoints = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [
        f"{e['endpoint']['address']['socket_address']['address']}:{e['endpoint']['address']['socket_address']['port_value']}"
        for e in endpoints
    ]


def test_discovery_address_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = {"ISTIOD_ADDR": "istiod.remote.example:15012"}
    assert pilots(bootstrap(tmp_path, monkeypatch, remote)) == ["istiod.remote.example:15012"]
    with_pc = {**remote, "PROXY_CONFIG": json.dumps({"discoveryAddress": "pilot.local:15010"})}
    assert pilots(bootstrap(tmp_path, monkeypatch, with_pc)) == ["pilot.local:15010"]
    assert pilots(bootstrap(tmp_path, monkeypatch, with_pc, "--pilot", "10.0.0.9:15010")) == [
        "10.0.0.9:15010"
    ]


def test_proxy_config_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "pc.yaml"
    file.write_text(
        "proxyStatsMatcher: {inclusionRegexps: ['.*upstream_rq_5xx.*']}\n"
        "proxyMetadata: {ISTIO_META_A: file}\n"
    )
    env = {"PROXY_CONFIG": json.dumps({"proxyMetadata": {"ISTIO_META_A": "env", "ISTIO_META_B": "env"}})}
    boot = bootstrap(tmp_path, monkeypatch, env, "--proxy-config", str(file))
    metadata = boot["node"]["metadata"]
    assert (metadata["A"], metadata["B"]) == ("env", "env")  # PROXY_CONFIG over the file
    assert metadata["PROXY_CONFIG"]["proxyStatsMatcher"] == {"inclusionRegexps": [".*upstream_rq_5xx.*"]}
    patterns = boot["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    assert {"safe_regex": {"regex": ".*upstream_rq_5xx.*"}} in patterns
    # the bootstrap's own metadata is not overridden by proxyMetadata
    assert (
        bootstrap(
            tmp_path, monkeypatch, {"PROXY_CONFIG": '{"proxyMetadata": {"ISTIO_META_NAMESPACE": "x"}}'}
        )["node"]["metadata"]["NAMESPACE"]
        == "default"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ISTIOD_ADDR": "istiod"}, "ISTIOD_ADDR: expected HOST:PORT of the control plane, got 'istiod'"),
        ({"PROXY_CONFIG": "{concurrency: -2}"}, "PROXY_CONFIG: concurrency: expected a whole number >= 0"),
        ({"PROXY_CONFIG": "{"}, "PROXY_CONFIG: not valid YAML or JSON"),
    ],
)
def test_bad_values_are_named(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["bootstrap", "--xds-plaintext"]) == 2
    assert message in capsys.readouterr().err
