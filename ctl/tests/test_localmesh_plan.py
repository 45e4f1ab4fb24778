"""The local mesh plan read from a config directory: the shipped example and the errors users see."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshplane.ctl.localmesh.plan import PlanError, load_plan, mesh_config_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"

WE = """apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: demo}
spec: {address: ADDRESS, labels: {app: web}, serviceAccount: web-sa}
---
"""
LW = """apiVersion: meshplane.io/v1alpha1
kind: LocalWorkload
metadata: {name: web, namespace: demo}
spec: {command: COMMAND}
"""


def _dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "wl.yaml").write_text(text)
    return tmp_path


def test_example_bookinfo_plan() -> None:
    plan = load_plan(EXAMPLE)
    assert [w.proxy for w in plan.workloads] == [
        "productpage-v1.bookinfo",
        "reviews-v1.bookinfo",
        "reviews-v2.bookinfo",
        "reviews-v3.bookinfo",
        "ratings-v1.bookinfo",
    ]
    pp = plan.workloads[0]
    assert (pp.address, pp.labels, pp.service_account) == (
        "127.0.10.1",
        {"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio"},
        "bookinfo-productpage",
    )
    assert pp.command[:2] == ["python", "bookapp.py"]
    assert (plan.gateway_bind, plan.gateway_port) == ("127.0.0.1", 8080)


def test_workload_takes_address_labels_and_account_from_its_workload_entry(tmp_path: Path) -> None:
    text = WE.replace("ADDRESS", "127.0.9.9") + LW.replace("COMMAND", "[python, app.py, --port, 1]")
    (w,) = load_plan(_dir(tmp_path, text)).workloads
    assert (w.name, w.namespace, w.address, w.labels, w.service_account) == (
        "web",
        "demo",
        "127.0.9.9",
        {"app": "web"},
        "web-sa",
    )
    assert w.command == ["python", "app.py", "--port", "1"]
    assert w.source == tmp_path / "wl.yaml"


def test_missing_workload_entry_names_the_object(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"wl.yaml#0 \(LocalWorkload demo/web\): no WorkloadEntry demo/web"):
        load_plan(_dir(tmp_path, LW.replace("COMMAND", "[x]")))


def test_non_loopback_address_is_refused(tmp_path: Path) -> None:
    text = WE.replace("ADDRESS", "10.0.0.5") + LW.replace("COMMAND", "[x]")
    with pytest.raises(PlanError, match=r"WorkloadEntry demo/web\): spec.address must be a loopback"):
        load_plan(_dir(tmp_path, text))


@pytest.mark.parametrize("command", ["[]", "run-me", "[{a: 1}]"])
def test_bad_command_is_refused(tmp_path: Path, command: str) -> None:
    text = WE.replace("ADDRESS", "127.0.9.9") + LW.replace("COMMAND", command)
    with pytest.raises(PlanError, match=r"wl.yaml#1 \(LocalWorkload demo/web\): spec.command must be"):
        load_plan(_dir(tmp_path, text))


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "bookinfo")
    (tmp_path / "bookinfo" / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(PlanError, match=r"broken.yaml: cannot read YAML"):
        load_plan(tmp_path / "bookinfo")


def test_no_gateway_leaves_port_unset(tmp_path: Path) -> None:
    assert load_plan(_dir(tmp_path, WE.replace("ADDRESS", "127.0.9.9"))).gateway_port == 0


def test_app_endpoint_comes_from_the_matching_sidecar_ingress() -> None:
    plan = load_plan(EXAMPLE)
    assert {w.name: w.app_endpoints for w in plan.workloads} == {
        "productpage-v1": ("127.0.0.1:19001",),
        "reviews-v1": ("127.0.0.1:19002",),
        "reviews-v2": ("127.0.0.1:19003",),
        "reviews-v3": ("127.0.0.1:19004",),
        "ratings-v1": ("127.0.0.1:19005",),
    }


def test_mesh_config_file_is_the_flag_else_the_directory_s_mesh_yaml(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE, config)
    flag = tmp_path / "other.yaml"
    assert mesh_config_file(config, None) is None  # the example has none: Istio's defaults
    (config / "mesh.yaml").write_text("defaultConfig: {concurrency: 3}\n")
    assert mesh_config_file(config, None) == (config / "mesh.yaml").resolve()
    assert mesh_config_file(config, flag) == flag.resolve()  # --mesh-config wins
    (config / "sub").mkdir()
    assert mesh_config_file(config / "sub", None) is None  # only the directory's own, not a parent's
    # the plan does not read it as config: same workloads as without it
    assert [w.proxy for w in load_plan(config).workloads] == [w.proxy for w in load_plan(EXAMPLE).workloads]
