"""`meshctl analyze` over files and directories: messages, JSON output and exit codes."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshplane.ctl.main import main
from meshplane.shared.analysis import ALL_TYPES
from meshplane.shared.analysis.registry import ALL
from meshplane.shared.natsserver import free_port

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
    assert "No validation issues found" in capsys.readouterr().err  # istioctl prints it on stderr


def test_json_output_and_warning_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "svc.yaml").write_text(SVC.replace("name: http,", "name: web,"))
    assert main(["analyze", "--dir", str(tmp_path), "-o", "json"]) == 0  # IST0118 is only Info
    messages = json.loads(capsys.readouterr().out)
    assert [(m["code"], m["level"], m["origin"]) for m in messages] == [  # istioctl's keys
        ("IST0118", "Info", "Service default/reviews")
    ]
    assert main(["analyze", "--dir", str(tmp_path), "--failure-threshold", "Info"]) == 79


def test_unreadable_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    assert main(["analyze", "-f", str(tmp_path / "bad.yaml"), str(tmp_path / "missing.yaml")]) == 2
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


POD_NS = """apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
spec: {containers: [{name: cart, image: cart:1}]}
"""


def test_positional_paths_stdin_lists_and_kubernetes_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "conf" / "deeper"
    sub.mkdir(parents=True)
    (sub / "vs.yml").write_text(VS)
    (tmp_path / "list.json").write_text(json.dumps({"kind": "List", "items": [yaml.safe_load(SVC)]}))
    (tmp_path / "notes.txt").write_text("not config")
    monkeypatch.setattr("sys.stdin", io.StringIO(POD_NS))
    code = main(
        [
            "analyze",
            str(tmp_path / "conf"),
            str(tmp_path / "list.json"),
            str(tmp_path / "notes.txt"),
            "-",
            "-A",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 79
    assert f"(VirtualService default/reviews {sub / 'vs.yml'}:1)" in out
    assert (
        "Warning [IST0103] (Pod shop/cart-1 <stdin>:5) The pod shop/cart-1 is missing the Istio proxy." in out
    )
    assert "IST0101" in out and "IST0118" not in out  # the Service from the JSON List was read
    assert "Skipping file" in err and "notes.txt" in err


def test_namespace_selection_and_thresholds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pods.yaml").write_text(POD_NS)
    assert main(["analyze", str(tmp_path)]) == 0  # default namespace only: shop is not analyzed
    assert "No validation issues found" in capsys.readouterr().err
    assert main(["analyze", "-n", "shop", str(tmp_path)]) == 0  # IST0103 is a Warning
    assert "IST0103" in capsys.readouterr().out
    assert main(["analyze", "-n", "shop", "--failure-threshold", "warning", str(tmp_path)]) == 79
    capsys.readouterr()
    assert main(["analyze", "-n", "shop", "--output-threshold", "Error", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "No validation issues found" in err


def test_suppress_with_globs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pods.yaml").write_text(POD_NS)
    assert main(["analyze", "-A", "--suppress", "IST0103=Pod shop/cart-*", str(tmp_path)]) == 0
    assert "IST0103" not in capsys.readouterr().out
    assert main(["analyze", "-A", "-S", "IST01*=Pod other/*", str(tmp_path)]) == 0
    assert "IST0103" in capsys.readouterr().out
    assert main(["analyze", "-A", "-S", "IST0103", str(tmp_path)]) == 2
    assert "CODE=Kind ns/name" in capsys.readouterr().err


def test_yaml_output_has_istioctl_keys_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vs.yaml").write_text(VS)
    assert main(["analyze", "-o", "yaml", str(tmp_path / "vs.yaml")]) == 0  # istioctl: -o yaml never fails
    [msg] = [m for m in yaml.safe_load(capsys.readouterr().out) if "gateway not found" in m["message"]]
    assert msg == {
        "code": "IST0101",
        "level": "Error",
        "origin": "VirtualService default/reviews",
        "reference": f"{tmp_path / 'vs.yaml'}:1",
        "message": 'Referenced gateway not found: "bookinfo-gateway"',
        "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=istioctl-analyze",
    }


def test_list_analyzers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "-L"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Available analyzers:\n")
    assert "* gateway.SecretAnalyzer:\n    Checks a gateway's referenced secrets for correctness\n" in out
    names = [line[2:-1] for line in out.splitlines() if line.startswith("* ")]
    assert names == sorted(names) and len(names) >= 20


def test_parse_errors_exit_65_unless_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    (tmp_path / "gw.yaml").write_text(GW)
    assert main(["analyze", str(tmp_path)]) == 65
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "(but 1 file could not be parsed)" in err
    assert main(["analyze", "--ignore-unknown", str(tmp_path)]) == 0


def test_bad_flags_and_unreadable_cluster_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gw.yaml").write_text(GW)
    assert main(["analyze", "--failure-threshold", "Fatal", str(tmp_path)]) == 2
    assert "expected Info, Warning or Error" in capsys.readouterr().err
    assert main(["analyze", "-o", "xml", str(tmp_path)]) == 2
    capsys.readouterr()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    assert main(["analyze"]) == 2  # no paths: the cluster is read, and there is no kubeconfig
    assert "meshctl analyze: cannot load the kubeconfig" in capsys.readouterr().err
    assert main(["analyze", "--use-kube=true", str(tmp_path)]) == 2
    assert main(["analyze", "--use-kube=false"]) == 2
    assert "nothing to analyze" in capsys.readouterr().err
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    assert main(["analyze", "--kubeconfig", str(unreachable)]) == 2
    assert "cannot reach the API server" in capsys.readouterr().err
    assert main(["analyze", "--kubeconfig", str(unreachable), "--context", "other"]) == 2
    assert "context 'other' not found" in capsys.readouterr().err


SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec: {hosts: [db.example.com], ports: [{number: 5432, name: tcp, protocol: TCP}], resolution: DNS}
"""
DNS_AUTO_ALLOCATE = (
    "defaultConfig: {proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'true', ISTIO_META_DNS_AUTO_ALLOCATE: 'true'}}\n"
)


def test_mesh_config_file_and_istio_configmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "se.yaml").write_text(SE)
    main(["analyze", str(tmp_path / "se.yaml")])
    assert "Warning [IST0134] (ServiceEntry default/db" in capsys.readouterr().out  # no address allocation
    (tmp_path / "mesh.yaml").write_text(DNS_AUTO_ALLOCATE)
    assert main(["analyze", "--meshConfigFile", str(tmp_path / "mesh.yaml"), str(tmp_path / "se.yaml")]) == 0
    assert "IST0134" not in capsys.readouterr().out
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": DNS_AUTO_ALLOCATE},
    }
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(cm))
    main(["analyze", str(tmp_path / "se.yaml"), str(tmp_path / "cm.yaml")])
    assert "IST0134" not in capsys.readouterr().out
    assert (
        main(["analyze", "--meshConfigFile", str(tmp_path / "absent.yaml"), str(tmp_path / "se.yaml")]) == 2
    )
    assert "--meshConfigFile" in capsys.readouterr().err


def test_a_directory_s_mesh_yaml_is_its_meshconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "se.yaml").write_text(SE)
    (tmp_path / "mesh.yaml").write_text(DNS_AUTO_ALLOCATE)
    assert main(["analyze", "--dir", str(tmp_path)]) == 0  # applied: no IST0134, no unknown document
    captured = capsys.readouterr()
    assert "IST0134" not in captured.out and "mesh.yaml" not in captured.out + captured.err
    (tmp_path / "mesh.yaml").write_text("rootNamespace: Not_A_Namespace\n")
    assert main(["analyze", str(tmp_path)]) == 79
    out = capsys.readouterr().out
    head = "Error [IST0106] (MeshConfig Not_A_Namespace/istio) Schema validation error"
    assert f"{head}: MeshConfig: rootNamespace: expected a Kubernetes namespace name" in out


def test_mesh_networks_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gw.yaml").write_text(GW)
    (tmp_path / "networks.yaml").write_text(
        "networks:\n  net1:\n    endpoints: [{fromRegistry: Kubernetes}, {fromRegistry: cluster-x}]\n"
        "    gateways: [{address: 1.2.3.4, port: 15443}]\n"
    )
    code = main(
        ["analyze", "-A", "--meshNetworksFile", str(tmp_path / "networks.yaml"), str(tmp_path / "gw.yaml")]
    )
    assert code == 79
    out = capsys.readouterr().out
    assert (
        "Error [IST0126] (MeshNetworks istio-system/meshnetworks) "
        "Unknown service registry cluster-x in network net1" in out
    )
    assert "Kubernetes" not in out


def test_readme_lists_every_code_the_analyzers_emit() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Analyze") :]
    section = section[: section.index("\n### ", 1)]
    listed = set(re.findall(r"IST\d{4}", section[section.index("- Codes") :]))
    emitted = {code for analyzer in ALL for code in analyzer.codes}
    assert listed == emitted == {t.code for t in ALL_TYPES}
    assert f"Codes ({len(emitted)})" in section


def test_analyzer_flag_runs_only_the_named_analyzers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "all.yaml").write_text(VS + "---\n" + SVC.replace("name: http,", "name: web,"))
    main(["analyze", str(tmp_path)])
    out = capsys.readouterr().out
    assert "IST0101" in out and "IST0118" in out
    assert main(["analyze", "--analyzer", "service.PortNameAnalyzer", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IST0118" in out and "IST0101" not in out
