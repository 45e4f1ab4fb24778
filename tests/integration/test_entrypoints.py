"""Every console script is installed and answers; the CNI plugin speaks the CNI VERSION protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = [
    "meshctl",
    "meshplane-pilot",
    "meshplane-citadel",
    "meshplane-node-agent",
    "meshplane-galley",
    "meshplane-cni-agent",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script: str) -> None:
    out = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


def test_cni_plugin_version() -> None:
    out = subprocess.run(
        [str(BIN / "meshplane-cni")],
        env=dict(os.environ, CNI_COMMAND="VERSION"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "1.0.0" in json.loads(out.stdout)["supportedVersions"]
