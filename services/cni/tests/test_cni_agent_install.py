"""The agent chains its plugin into a real CNI config directory, puts it back when another plugin
rewrites the config, and with ``--remove-on-exit`` takes it out again on SIGTERM (calico-like
conflist, single .conf, none). Without that flag it stays: ``test_cni_agent_fail_closed.py``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from meshplane.cni.testing import agent, wait_until

CALICO = {
    "name": "k8s-pod-network",
    "cniVersion": "0.3.1",
    "plugins": [
        {
            "type": "calico",
            "log_level": "info",
            "datastore_type": "kubernetes",
            "nodename": "node-1",
            "mtu": 1440,
            "ipam": {"type": "calico-ipam"},
            "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
        },
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
    ],
}
BRIDGE = {
    "cniVersion": "0.4.0",
    "name": "mynet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": True,
    "ipMasq": True,
    "ipam": {"type": "host-local", "subnet": "10.22.0.0/16", "routes": [{"dst": "0.0.0.0/0"}]},
}


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def ours(plugins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in plugins if p.get("type") == "meshplane-cni"]


def test_calico_conflist_append_reinsert_and_uninstall(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    calico = conf_dir / "10-calico.conflist"
    stale = {**CALICO, "plugins": [*CALICO["plugins"], {"type": "meshplane-cni", "name": "old"}]}
    calico.write_text(json.dumps(stale))
    with agent(tmp_path, [], "--remove-on-exit") as a:
        wait_until(lambda: read(calico)["plugins"][-1].get("cni_agent_run_dir"), 30, "our entry")
        config = read(calico)
        assert config["plugins"][:2] == CALICO["plugins"]
        assert len(ours(config["plugins"])) == 1, "the stale entry is replaced, not duplicated"
        assert config["plugins"][-1]["cni_agent_run_dir"] == str(a.run_dir)
        kubeconfig = conf_dir / "ZZZ-meshplane-cni-kubeconfig"
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        assert config["plugins"][-1]["kubernetes"]["kubeconfig"] == str(kubeconfig)
        binary = a.bin_dir / "meshplane-cni"
        assert os.access(binary, os.X_OK)
        version = subprocess.run([binary], env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30)
        assert "0.3.1" in json.loads(version.stdout)["supportedVersions"]

        calico.write_text(json.dumps(CALICO))  # calico's installer rewrites its config
        wait_until(lambda: ours(read(calico)["plugins"]), 30, "re-insertion")
        assert read(calico)["plugins"][:2] == CALICO["plugins"]
        assert a.stop() == 0
    assert read(calico) == CALICO
    assert not (conf_dir / "ZZZ-meshplane-cni-kubeconfig").exists()
    assert not (tmp_path / "bin" / "meshplane-cni").exists()
    assert sorted(p.name for p in conf_dir.iterdir()) == ["10-calico.conflist"]


def test_single_conf_becomes_a_conflist(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-bridge.conf").write_text(json.dumps(BRIDGE))
    wrapped = conf_dir / "10-bridge.conflist"
    with agent(tmp_path, [], "--remove-on-exit") as a:
        wait_until(wrapped.exists, 30, "wrapped conflist")
        config = read(wrapped)
        assert not (conf_dir / "10-bridge.conf").exists()
        assert config["cniVersion"] == "0.4.0" and config["name"] == "k8s-pod-network"
        assert config["plugins"][0] == {k: v for k, v in BRIDGE.items() if k != "cniVersion"}
        assert config["plugins"][1]["type"] == "meshplane-cni" and len(config["plugins"]) == 2
        assert a.stop() == 0
    assert read(wrapped)["plugins"] == [{k: v for k, v in BRIDGE.items() if k != "cniVersion"}]


def test_no_config_writes_our_own_then_moves_into_the_real_one(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    own = conf_dir / "YYY-meshplane-cni.conflist"
    with agent(tmp_path, [], "--remove-on-exit") as a:
        wait_until(own.exists, 30, "own conflist")
        assert [p["type"] for p in read(own)["plugins"]] == ["meshplane-cni"]
        assert stat.S_IMODE(own.stat().st_mode) == 0o600
        calico = conf_dir / "10-calico.conflist"
        calico.write_text(json.dumps(CALICO))  # the network plugin arrives after us
        wait_until(lambda: ours(read(calico)["plugins"]) and not own.exists(), 30, "move into calico")
        assert a.stop() == 0
    assert read(conf_dir / "10-calico.conflist") == CALICO
    assert not own.exists()


def test_daemonset_args_are_the_agents_and_share_the_socket_dir_with_the_host(tmp_path: Path) -> None:
    import yaml

    from meshplane.cni.agent.__main__ import parse_args
    from meshplane.cni.agent.install import Installer

    manifest = Path(__file__).parents[3] / "k8s" / "base" / "cni" / "cni.yaml"
    daemonset = next(d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parse_args(container["args"])
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: host_paths.get(m["name"]) for m in container["volumeMounts"]}
    assert mounts[str(args.run_dir)] == str(args.run_dir), "the plugin on the host finds the socket there"
    assert mounts[str(args.cni_conf_dir)] == args.host_cni_conf_dir
    installer = Installer(
        tmp_path / "bin", tmp_path / "conf", args.run_dir, host_conf_dir=Path(args.host_cni_conf_dir)
    )
    entry = installer.entry()
    assert entry["kubernetes"]["kubeconfig"] == f"{args.host_cni_conf_dir}/ZZZ-meshplane-cni-kubeconfig"
    assert entry["cni_agent_run_dir"] == str(args.run_dir)
