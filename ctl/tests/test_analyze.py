"""`meshctl analyze` over files and directories: messages, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshplane.ctl.main import main

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: reviews}}]}]
"""
SVC = """apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{name: http, port: 9080}]}
"""
GW = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def test_dir_with_a_missing_gateway_exits_79(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(VS)
    (tmp_path / "svc.yaml").write_text(SVC)
    assert main(["analyze", "--dir", str(tmp_path)]) == 79
    out = capsys.readouterr().out
    assert (
        "Error [IST0101] (VirtualService default/reviews vs.yaml:1) "
        'Referenced gateway not found: "bookinfo-gateway"' in out
    )


def test_files_that_are_consistent_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, text in (("vs.yaml", VS), ("svc.yaml", SVC), ("gw.yaml", GW)):
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    assert main(["analyze", "-f", *paths]) == 0
    assert "No validation issues found" in capsys.readouterr().out


def test_json_output_and_warning_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "svc.yaml").write_text(SVC.replace("name: http,", "name: web,"))
    assert main(["analyze", "--dir", str(tmp_path), "-o", "json"]) == 0  # IST0118 is only Info
    messages = json.loads(capsys.readouterr().out)
    assert [(m["code"], m["level"], m["resource"]) for m in messages] == [
        ("IST0118", "Info", "Service default/reviews")
    ]
    assert main(["analyze", "--dir", str(tmp_path), "--failure-threshold", "Info"]) == 79


def test_unreadable_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    assert main(["analyze", "-f", str(tmp_path / "bad.yaml"), str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err
    assert "missing.yaml: no such file" in err
    assert "Traceback" not in err


def test_meshctl_analyze_as_a_process(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(VS)
    meshctl = Path(sys.executable).parent / "meshctl"
    out = subprocess.run(
        [str(meshctl), "analyze", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 79
    assert "IST0101" in out.stdout
