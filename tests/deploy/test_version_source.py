"""One version source (issue 12, item 5): ``meshplane/shared/version.py``.

Every distribution's ``pyproject.toml`` reads it through hatch; the components report it at run
time; the places that must repeat it as a literal (image tags, Dockerfile comments) equal it.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from meshplane.ctl.bootstrap import BootstrapOptions, render_bootstrap
from meshplane.ctl.inject import PROXY_IMAGE
from meshplane.shared.components import VERSION
from meshplane.shared.version import ISTIO_VERSION, __version__

from .imports import REPO
from .test_dockerfiles import uv_binary

SOURCE = REPO / "shared" / "src" / "meshplane" / "shared" / "version.py"
PYPROJECTS = sorted(
    p for p in REPO.glob("**/pyproject.toml") if ".venv" not in p.parts and p != REPO / "pyproject.toml"
)
IMAGE_TAG = re.compile(r"meshplane/[a-z-]+:([0-9][^\s`\"']*)")


def test_the_source_is_one_literal() -> None:
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", __version__)
    assert SOURCE.read_text().count(f'"{__version__}"') == 1


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_every_distribution_reads_its_version_from_the_source(pyproject: Path) -> None:
    data = tomllib.loads(pyproject.read_text())
    assert "version" not in data["project"], f"{pyproject}: a literal version; use dynamic"
    assert data["project"]["dynamic"] == ["version"]
    assert (pyproject.parent / data["tool"]["hatch"]["version"]["path"]).resolve() == SOURCE.resolve()
    assert importlib.metadata.version(data["project"]["name"]) == __version__


def test_the_workspace_root_repeats_the_same_version() -> None:
    """The root is a virtual project (not built), so hatch does not read it: it keeps a literal."""
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert root["project"]["version"] == __version__


def test_components_report_it() -> None:
    assert __version__ == VERSION
    assert PROXY_IMAGE.endswith(f":{__version__}")
    bootstrap = render_bootstrap(BootstrapOptions(proxy_type="sidecar", node_id="sidecar~1.2.3.4~a.b~b.svc"))
    assert bootstrap["node"]["metadata"]["MESHPLANE_VERSION"] == __version__
    assert bootstrap["node"]["metadata"]["ISTIO_VERSION"] == ISTIO_VERSION
    out = subprocess.run(
        [sys.executable, "-m", "meshplane.ctl.main", "version", "--short"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout == f"{__version__}\n"


def test_image_tags_and_dockerfile_comments_equal_it() -> None:
    files = [*REPO.glob("k8s/**/*.yaml"), *REPO.glob("k8s/**/*.md"), *REPO.glob("docker/*.Dockerfile")]
    tags = {(f.relative_to(REPO).as_posix(), t) for f in files for t in IMAGE_TAG.findall(f.read_text())}
    assert tags, "no meshplane image tags found"
    assert {t for _, t in tags} == {__version__}, sorted(t for t in tags if t[1] != __version__)


@pytest.mark.timeout(240)
def test_a_member_builds_an_sdist_and_wheel_with_the_version_of_the_source(tmp_path: Path) -> None:
    """`uv build` goes source -> sdist -> wheel; a copy whose source says 9.9.9 builds 9.9.9."""
    member = tmp_path / "ctl"
    shutil.copytree(REPO / "ctl", member, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    source = tmp_path / SOURCE.relative_to(REPO)
    source.parent.mkdir(parents=True)
    source.write_text(SOURCE.read_text().replace(f'"{__version__}"', '"9.9.9"'))
    out = tmp_path / "dist"
    subprocess.run(
        [uv_binary(), "build", str(member), "-o", str(out)],
        capture_output=True,
        timeout=200,
        check=True,
    )
    built = sorted(p.name for p in out.glob("meshplane_ctl*"))
    assert built == ["meshplane_ctl-9.9.9-py3-none-any.whl", "meshplane_ctl-9.9.9.tar.gz"]
