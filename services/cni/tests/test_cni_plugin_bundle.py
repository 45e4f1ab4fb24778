"""The plugin file the agent installs carries its own modules and needs only a python3 on the host."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from meshplane.cni.agent.pluginbundle import MIN_PYTHON, plugin_file, preamble


def test_runs_from_anywhere_with_a_bare_environment(tmp_path: Path) -> None:
    plugin = tmp_path / "meshplane-cni"
    plugin.write_bytes(plugin_file())
    plugin.chmod(0o755)
    done = subprocess.run(
        [str(plugin)],
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "1.0.0" in json.loads(done.stdout)["supportedVersions"]
    bad = subprocess.run(
        [str(plugin)], env={"CNI_COMMAND": "ADD"}, input=b"{}", capture_output=True, timeout=30
    )
    assert bad.returncode == 1 and "CNI_CONTAINERID" in json.loads(bad.stdout)["msg"]


def test_archive_holds_every_module_the_plugin_imports_and_nothing_of_the_agent() -> None:
    data = plugin_file()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "__main__.py" in names
    assert "meshplane/cni/plugin/main.py" in names and "meshplane/cni/rules/iptables.py" in names
    assert "meshplane/cni/netns.py" in names
    assert not [n for n in names if "/agent/" in n]
    assert sys.prefix.encode() not in data
    assert plugin_file() == data, "the same file every time the agent starts"


def test_without_python_the_runtime_gets_a_cni_error_naming_it() -> None:
    (message,) = re.findall(r"echo '(.*)'", preamble())
    error = json.loads(message)
    assert error["code"] == 999 and "no python3" in error["msg"]
    assert ".".join(map(str, MIN_PYTHON)) in error["msg"]
