"""The ``istio-validation`` init container's check in a real pod network namespace (issue 14
item 4): run as the proxy's user with the arguments injection gives it, it fails (exit 126,
Istio's code, so the pod never starts) while the pod has no capture rules, and passes once the
real CNI plugin, fed by a real agent, has programmed them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from meshplane.cni.testing import (
    agent,
    netconf,
    pod_netns,
    pod_object,
    prev_result,
    requires_root,
    run_plugin,
)
from meshplane.cni.testing_netns import unprivileged_python
from meshplane.shared.inject import InjectorConfig
from meshplane.shared.inject.template import validation_container

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]


def validate(netns: str) -> subprocess.CompletedProcess[str]:
    """The injected container's check, as uid/gid 1337 inside ``netns``. The venv's interpreter
    may live under a private home, so the stdlib-only module runs on a world-runnable Python."""
    python = unprivileged_python()
    if python is None:
        pytest.skip("no python interpreter that uid 1337 can run")
    container = validation_container(InjectorConfig())
    assert container["command"] == ["meshctl", "capture-validate"]
    user = container["securityContext"]["runAsUser"]
    argv = ["nsenter", f"--net={netns}", f"--setuid={user}", f"--setgid={user}", python]
    argv += ["-m", "meshplane.ctl.capture", *container["args"], "--timeout", "2"]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'ctl' / 'src'}:{REPO / 'shared' / 'src'}"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/", env=env, check=False)


def test_validation_fails_without_capture_and_passes_with_the_plugins_rules(tmp_path: Path) -> None:
    with agent(tmp_path, [pod_object("web")], "--repair=false") as node_agent, pod_netns() as pod:
        uncaptured = validate(pod.path)
        assert uncaptured.returncode == 126, uncaptured.stderr
        assert uncaptured.stderr.startswith(
            "meshctl capture-validate: traffic is not redirected to the proxy"
        )
        assert "127.0.0.6:15002" in uncaptured.stderr

        conf = netconf(node_agent.run_dir, prev_result(pod))
        code, result = run_plugin("ADD", conf, netns=pod.path, plugin=node_agent.bin_dir / "meshplane-cni")
        assert code == 0, result
        captured = validate(pod.path)
        assert captured.returncode == 0, captured.stderr
        assert "redirected to the proxy's port 15006" in captured.stdout
