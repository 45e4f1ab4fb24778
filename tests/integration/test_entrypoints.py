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


#: each script with the arguments it requires, so the misspelt flag is the only fault
REQUIRED = {
    "meshctl": ["version"],
    "meshplane-citadel": ["--ca-dir", "/nonexistent"],
    "meshplane-node-agent": ["--sds-socket", "/nonexistent/s.sock", "--ca-addr", "127.0.0.1:1"],
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_unknown_flag_is_a_usage_error_naming_it(script: str) -> None:
    """A misspelt flag (``--grcp-addr``) is refused, never silently ignored."""
    argv = [str(BIN / script), *REQUIRED.get(script, []), "--grcp-addr", "127.0.0.1:1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "unrecognized arguments: --grcp-addr" in out.stderr
    assert "Traceback" not in out.stderr
