"""Images that run: each distribution works with only what it declares (issue 13, item 9).

Two checks per distribution. The import scanner (``imports.py``) compares what the code imports
with what ``pyproject.toml`` declares. Then an environment is built from only the distribution's
locked, declared dependencies (``uv export --package X --frozen --no-dev``, as the image's
``uv sync --package X`` installs them; no Docker engine), with meshplane's own sources of that
distribution and the workspace members it depends on on the path, as the image's wheels carry
them. In it, every module of the distribution is imported and every console script answers
``--help``. The environments are cached outside the repository by the exported requirements, so
only a lock change rebuilds them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from .imports import (
    REPO,
    TEST_SUPPORT,
    WORKSPACE,
    Import,
    declared,
    imports_of_source,
    imports_of_tree,
    source_dir,
    undeclared_imports,
)
from .test_dockerfiles import uv_binary

DISTRIBUTIONS = sorted(WORKSPACE)


def test_scanner_reads_nested_imports_and_skips_type_checking_and_relative_ones() -> None:
    source = (
        "from __future__ import annotations\n"
        "import os, json\n"
        "from typing import TYPE_CHECKING\n"
        "import httpx\n"
        "from . import sibling\n"
        "from meshplane.shared import bus\n"
        "if TYPE_CHECKING:\n"
        "    import grpc\n"
        "def later():\n"
        "    from watchfiles import awatch\n"
    )
    found = imports_of_source(source, "x.py")
    assert [(i.module, i.where) for i in found] == [("httpx", "x.py:4"), ("watchfiles", "x.py:10")]


def test_scanner_names_an_undeclared_import_and_accepts_one_declared_through_shared() -> None:
    imports = [Import("kubernetes.client", "pilot/thing.py:3"), Import("nats.js", "pilot/thing.py:4")]
    problems = undeclared_imports("meshplane-pilot", imports)
    assert problems == [
        "pilot/thing.py:3: imports kubernetes.client (from kubernetes), "
        "which meshplane-pilot's pyproject.toml does not declare"
    ]
    assert "nats-py" in declared("meshplane-pilot")  # through meshplane-shared


def test_scanner_resolves_a_namespace_package_by_its_submodule() -> None:
    (imp,) = imports_of_source("from opentelemetry import trace\n", "x.py")
    assert undeclared_imports("meshplane-shared", [imp]) == []
    assert undeclared_imports("meshplane-proto", [imp]) != []


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_import_is_declared(distribution: str) -> None:
    problems = undeclared_imports(distribution, imports_of_tree(source_dir(distribution)))
    assert not problems, "\n".join(problems)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(UV_PYTHON_DOWNLOADS="never", PYTHONNOUSERSITE="1", **extra)
    return env


def locked_requirements(distribution: str) -> str:
    """The third-party packages the image of ``distribution`` gets, pinned by uv.lock."""
    command = [uv_binary(), "export", "--package", distribution, "--frozen", "--no-dev"]
    command += ["--no-emit-workspace", "--no-hashes", "--no-header", "--no-annotate"]
    result = subprocess.run(command, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def image_environment(distribution: str) -> Path:
    """A virtualenv holding only ``distribution``'s locked dependencies, cached by their hash."""
    requirements = locked_requirements(distribution)
    key = hashlib.sha256(f"{sys.version}\n{requirements}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshplane" / "image-envs"
    venv = root / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers build each environment once
        if (venv / ".complete").exists():
            return venv
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
        try:
            (staging / "requirements.txt").write_text(requirements)
            python = str(staging / "venv" / "bin" / "python")
            for command in (
                [uv_binary(), "venv", "--quiet", "--python", sys.executable, str(staging / "venv")],
                [uv_binary(), "pip", "install", "--quiet", "--python", python, "--link-mode", "copy"]
                + ["-r", str(staging / "requirements.txt")],
            ):
                result = subprocess.run(
                    command, env=_clean_env(), capture_output=True, text=True, timeout=600
                )
                assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
            (staging / ".complete").touch()
            shutil.rmtree(venv, ignore_errors=True)
            staging.rename(venv)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return venv


def workspace_closure(distribution: str) -> list[str]:
    return [distribution] + sorted(d for d in declared(distribution) if d in WORKSPACE)


def run_in_image(
    distribution: str, code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    venv = image_environment(distribution)
    path = os.pathsep.join(str(source_dir(d)) for d in workspace_closure(distribution))
    return subprocess.run(
        [str(venv / "venv" / "bin" / "python"), "-c", code, *args],
        cwd=venv,
        env=_clean_env(PYTHONPATH=path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )


IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback
root, skip = sys.argv[1], tuple(sys.argv[2:])
package = importlib.import_module(root)
failures = {}
names = [root] + [m.name for m in pkgutil.walk_packages(package.__path__, root + ".")]
for name in names:
    if any(name == s or name.startswith(s + ".") for s in skip):
        continue
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps({"imported": len(names), "failures": failures}))
"""


def own_package(distribution: str) -> str:
    (package,) = [p.name for p in (source_dir(distribution) / "meshplane").iterdir() if p.is_dir()]
    return f"meshplane.{package}"


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_module_imports_with_only_declared_dependencies(distribution: str) -> None:
    result = run_in_image(distribution, IMPORT_ALL, own_package(distribution), *TEST_SUPPORT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["imported"] > 0
    assert not report["failures"], "\n".join(f"{m}:\n{tb}" for m, tb in report["failures"].items())


def console_scripts() -> list[tuple[str, str, str]]:
    found = []
    for distribution in DISTRIBUTIONS:
        pyproject = tomllib.loads((WORKSPACE[distribution] / "pyproject.toml").read_text())
        for script, target in pyproject["project"].get("scripts", {}).items():
            found.append((distribution, script, target))
    return found


#: run a console script's target ("module:function") with the argv that follows it
RUN_SCRIPT = """
import importlib, sys
module, _, attr = sys.argv[1].partition(":")
sys.argv = sys.argv[2:]
sys.exit(getattr(importlib.import_module(module), attr)())
"""


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("distribution", "script", "target"), console_scripts())
def test_console_script_starts_with_only_declared_dependencies(
    distribution: str, script: str, target: str
) -> None:
    if script == "meshplane-cni":  # the CNI plugin speaks the CNI protocol: ask it for its versions
        result = run_in_image(distribution, RUN_SCRIPT, target, script, env={"CNI_COMMAND": "VERSION"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert "1.0.0" in json.loads(result.stdout)["supportedVersions"]
        return
    result = run_in_image(distribution, RUN_SCRIPT, target, script, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage" in result.stdout.lower(), result.stdout[-2000:]
