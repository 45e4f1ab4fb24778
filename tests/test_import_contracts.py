"""The import contracts that ``make check`` runs hold today, and a forbidden import breaks them.

Each case copies the ``meshplane`` source trees into a temporary directory, adds one import that
a contract forbids, and runs ``lint-imports`` with the project's own contracts on that copy (in an
interpreter without site, so only the copy is importable as ``meshplane``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC_TREES = [REPO / "proto/src", REPO / "shared/src", REPO / "ctl/src", *sorted(REPO.glob("services/*/src"))]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(tree), str(REPO), sysconfig.get_paths()["purelib"]]
    code = (
        "import os, sys; sys.path[:0] = os.environ['LINT_PATH'].split(':');"
        "import importlinter.cli as c; c.lint_imports_command()"
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={**os.environ, "LINT_PATH": ":".join(paths)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for src in SRC_TREES:
        shutil.copytree(src / "meshplane", tmp_path / "meshplane", dirs_exist_ok=True)
    return tmp_path


def test_the_contracts_hold_on_the_sources(tree: Path) -> None:
    out = _lint(tree)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("pilot/model/push_context.py", "import meshplane.pilot.xds.discovery", "Pilot is layered"),
        ("pilot/generators/clusters.py", "import meshplane.pilot.app", "Pilot is layered"),
        ("galley/app.py", "import meshplane.pilot.settings", "Services never import each other"),
        ("shared/lifecycle.py", "import meshplane.ctl.main", "shared imports no service"),
        ("cni/plugin/main.py", "import yaml", "The CNI plugin imports only the standard library"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / "meshplane" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    out = _lint(tree)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{contract}" in out.stdout and "BROKEN" in out.stdout, out.stdout
