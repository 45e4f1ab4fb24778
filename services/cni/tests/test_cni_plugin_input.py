"""The plugin's answers to bad input and to an unreachable agent: the spec's error JSON with a
clear message and code, never a traceback; pass-through when the pod is not ours to capture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshplane.cni.plugin.main import run


def env(command: str = "ADD", **extra: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/run/netns/does-not-exist-mp",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "CNI_PATH": "/opt/cni/bin",
    }
    base.update(extra)
    return base


def conf(tmp_path: Path, **fields: Any) -> bytes:
    data: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "meshplane-cni",
        "cni_agent_run_dir": str(tmp_path / "no-agent"),
        "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}], "interfaces": []},
    }
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


def call(environ: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any]]:
    code, out = run(environ, stdin)
    return code, json.loads(out) if out else {}


def test_version_lists_the_versions_istio_templates_use() -> None:
    code, out = call({"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0
    assert {"0.3.1", "0.4.0", "1.0.0"} <= set(out["supportedVersions"])


@pytest.mark.parametrize(
    ("environ", "stdin", "code", "says"),
    [
        (env(CNI_COMMAND="BOGUS"), None, 4, "CNI_COMMAND"),
        (env(CNI_CONTAINERID=""), None, 4, "CNI_CONTAINERID"),
        (env(CNI_ARGS="K8S_POD_NAME"), None, 4, "CNI_ARGS"),
        (env(), b"{not json", 6, "not JSON"),
        (env(), b"[]", 6, "JSON object"),
        (env(), {"cniVersion": "9.9.9"}, 1, "9.9.9"),
        (env(), {"cniVersion": None}, 1, "cniVersion"),
        (env(), {"prevResult": "broken"}, 6, "prevResult"),
        (env(), {"prevResult": {"ips": [{"address": "300.1.1.1/24"}]}}, 6, "prevResult.ips[0].address"),
        (env(), {"prevResult": {"ips": "10.0.0.1"}}, 6, "prevResult.ips"),
        (env(), {"exclude_namespaces": "default"}, 7, "exclude_namespaces"),
        (env(CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=../../x y"), None, 4, "K8S_POD_NAME"),
    ],
)
def test_bad_input_is_a_cni_error_naming_what_is_wrong(
    tmp_path: Path, environ: dict[str, str], stdin: Any, code: int, says: str
) -> None:
    raw = stdin if isinstance(stdin, bytes) else conf(tmp_path, **(stdin or {}))
    exit_code, out = call(environ, raw)
    assert exit_code == 1
    assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert out["code"] == code
    assert says in out["msg"] + out["details"]


def test_unreachable_agent_fails_closed(tmp_path: Path) -> None:
    exit_code, out = call(env(), conf(tmp_path))
    assert exit_code == 1
    assert out["code"] == 11
    assert "default/web" in out["msg"] and "failing closed" in out["msg"]


def test_excluded_namespace_passes_prev_result_through_without_agent(tmp_path: Path) -> None:
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.2.3/24"}], "dns": {}}
    environ = env(CNI_ARGS="K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns")
    exit_code, out = call(environ, conf(tmp_path, cniVersion="0.4.0", prevResult=prev))
    assert exit_code == 0
    assert out == prev


def test_without_pod_args_add_passes_through_and_without_prev_result_returns_empty(tmp_path: Path) -> None:
    exit_code, out = call(env(CNI_ARGS=""), conf(tmp_path, cniVersion="0.3.1", prevResult=None))
    assert exit_code == 0
    assert out["cniVersion"] == "0.3.1"
    assert "ips" not in out or out["ips"] == []


def test_del_of_a_gone_netns_succeeds(tmp_path: Path) -> None:
    assert call(env("DEL"), conf(tmp_path)) == (0, {})


def test_check_needs_0_4_0(tmp_path: Path) -> None:
    exit_code, out = call(env("CHECK"), conf(tmp_path, cniVersion="0.3.1"))
    assert exit_code == 1 and out["code"] == 1 and "0.4.0" in out["msg"]


def test_plugin_path_imports_only_the_stdlib_and_its_own_modules() -> None:
    """The runtime starts the plugin once per pod: nothing heavy may load on its path."""
    import subprocess
    import sys

    import meshplane.cni.plugin.main as plugin_main

    root = str(Path(plugin_main.__file__).resolve().parents[3])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); before = set(sys.modules)\n"
        "import meshplane.cni.plugin.main, meshplane.cni.plugin.add, meshplane.cni.plugin.delete\n"
        "import meshplane.cni.plugin.check\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    ours = [m for m in loaded if m.startswith("meshplane")]
    assert set(ours) <= {
        "meshplane",
        "meshplane.cni",
        "meshplane.cni.netns",
        "meshplane.cni.plugin",
        "meshplane.cni.rules",
        *(m for m in ours if m.startswith(("meshplane.cni.plugin.", "meshplane.cni.rules."))),
    }
    heavy = (
        "pydantic",
        "nats",
        "kubernetes",
        "yaml",
        "google",
        "grpc",
        "meshplane.shared",
        "asyncio",
        "dataclasses",
    )
    assert not [m for m in loaded if m.startswith(heavy)]
    stdlib = set(sys.stdlib_module_names)
    assert not [
        m
        for m in loaded
        if not m.startswith("meshplane")
        and m.split(".")[0].lstrip("_") not in stdlib
        and m.split(".")[0] not in stdlib
    ]
