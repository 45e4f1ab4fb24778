"""The images' Dockerfiles: multi-stage, non-root, and each installs only its own distribution.

There is no Docker engine here, so the builder stage's ``uv sync`` line is run as written on the
build context that .dockerignore leaves, into a temporary virtualenv, and what it installed is
inspected.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshplane.ctl.inject import PROXY_IMAGE

from .conftest import REPO, Manifests

#: image -> the workspace distribution its builder installs
IMAGES = {
    "galley": "meshplane-galley",
    "pilot": "meshplane-pilot",
    "citadel": "meshplane-citadel",
    "cni": "meshplane-cni",
    "proxy": "meshplane-ctl",
}
ROOT_IMAGES = {"cni"}  # the CNI agent writes host CNI dirs and enters pod netns


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for text in logical:
        instruction, _, args = text.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: '*' and '?' stay within one path segment, '**' spans segments."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the context (last matching pattern wins)."""
    parts = relative.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_dockerignore_matching_follows_docker_rules() -> None:
    patterns = ["**/tests", "*.md", "k8s", "!docker/*.sh"]
    assert is_ignored("shared/tests/bus/test_kv.py", patterns)
    assert is_ignored("README.md", patterns) and not is_ignored("shared/README.md", patterns)
    assert is_ignored("k8s/base/kustomization.yaml", patterns)
    assert not is_ignored("shared/src/meshplane/shared/bus/kv.py", patterns)


@pytest.fixture(scope="session")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files `docker build .` would send, copied to a temporary directory."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    context = tmp_path_factory.mktemp("context")
    patterns = dockerignore_patterns()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if is_ignored(relative, patterns):
            continue
        if source.is_symlink():  # as docker sends it: the link itself (ctl/manifests -> ../k8s)
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            (context / relative).symlink_to(os.readlink(source))
        elif source.is_file():
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / relative)
    return context


def dockerfiles() -> dict[str, Path]:
    return {p.name.removesuffix(".Dockerfile"): p for p in sorted((REPO / "docker").glob("*.Dockerfile"))}


def test_there_is_one_dockerfile_per_image() -> None:
    assert set(dockerfiles()) == set(IMAGES) | {"bookapp"}


@pytest.mark.parametrize("image", sorted(set(IMAGES) | {"bookapp"}))
def test_final_stage_is_slim_and_runs_as_the_right_user(image: str) -> None:
    stages = parse_dockerfile(dockerfiles()[image])
    assert len(stages) >= 2, "multi-stage build expected"
    assert stages[0].name == "builder"
    final = stages[-1]
    assert final.base.startswith("python:3.11-slim")
    users = final.args("USER")
    assert users, "the final stage must say which user it runs as"
    if image in ROOT_IMAGES:
        assert users[-1] == "0:0"
    else:
        assert users[-1] == "10001:10001"
    final_text = " ".join(args for _, args in final.instructions)
    for tool in ("uv ", "pip install", "gcc", "build-essential"):
        assert tool not in final_text, f"{image}: {tool!r} in the runtime stage"
    copied = [args for args in final.args("COPY") if args.startswith("--from=")]
    assert copied and all(args.startswith("--from=builder ") for args in copied)
    assert final.args("ENTRYPOINT")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_builder_syncs_only_its_distribution_from_the_lock(image: str) -> None:
    (builder, runtime) = parse_dockerfile(dockerfiles()[image])
    (sync,) = [args for args in builder.args("RUN") if args.startswith("uv sync")]
    words = shlex.split(sync)
    assert {"--frozen", "--no-dev", "--no-editable"} <= set(words)
    assert words[words.index("--package") + 1] == IMAGES[image]
    assert runtime.args("COPY")[0] == "--from=builder /app/.venv /app/.venv"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copy_sources_exist_in_the_build_context(image: str, build_context: Path) -> None:
    for stage in parse_dockerfile(dockerfiles()[image]):
        for args in stage.args("COPY"):
            if not args.startswith("--from="):
                for source in shlex.split(args)[:-1]:
                    assert (build_context / source).exists(), f"{image}: COPY {source} not in the context"


def test_control_plane_images_expose_the_ports_the_manifests_use(base: Manifests) -> None:
    for name in ("galley", "pilot", "citadel"):
        (_, runtime) = parse_dockerfile(dockerfiles()[name])
        exposed = {int(port) for args in runtime.args("EXPOSE") for port in args.split()}
        container = base.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert exposed == {p["containerPort"] for p in container["ports"]}, name


def uv_binary() -> str:
    candidate = Path(sys.executable).parent / "uv"
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make env installs it into .venv)")
    return found


@pytest.mark.timeout(240)
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_builder_installs_only_its_own_distribution(image: str, build_context: Path, tmp_path: Path) -> None:
    (builder, runtime) = parse_dockerfile(dockerfiles()[image])
    (sync,) = [args for args in builder.args("RUN") if args.startswith("uv sync")]
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy")
    command = [uv_binary(), *shlex.split(sync)[1:], "--python", sys.executable]
    result = subprocess.run(command, cwd=build_context, env=env, capture_output=True, text=True, timeout=220)
    assert result.returncode == 0, result.stderr[-2000:]

    installed = {
        p.name.split("-")[0].replace("_", "-")
        for p in (venv / "lib").glob("python3*/site-packages/meshplane_*.dist-info")
    }
    assert installed == {IMAGES[image], "meshplane-shared", "meshplane-proto"}

    scripts = tomllib.loads((build_context / distribution_dir(IMAGES[image]) / "pyproject.toml").read_text())
    declared = set(scripts["project"].get("scripts", {}))
    assert declared and all((venv / "bin" / script).exists() for script in declared)
    entrypoint = runtime.args("ENTRYPOINT")[-1]
    if image != "proxy":
        assert entrypoint.strip('[]"') in declared
    else:
        assert (venv / "bin" / "envoy").exists() and (venv / "bin" / "meshctl").exists()


def distribution_dir(distribution: str) -> str:
    short = distribution.removeprefix("meshplane-")
    return "ctl" if short == "ctl" else f"services/{short}"


def test_gateway_entrypoint_script_is_executable() -> None:
    script = REPO / "docker" / "gateway-entrypoint.sh"
    assert os.access(script, os.X_OK)
    assert "exec envoy" in script.read_text()


def test_every_meshplane_image_in_use_has_its_dockerfile(all_rendered: dict[str, Manifests]) -> None:
    """Images named by the manifests, the compose file and kube-inject's sidecar are all built here."""
    used = {PROXY_IMAGE}
    for manifests in all_rendered.values():
        for workload in manifests.workloads():
            pod = workload["spec"]["template"]["spec"]
            used |= {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    compose_text = (REPO / "docker-compose.yml").read_text()
    used |= set(re.findall(r"image: (meshplane/\S+)", compose_text))
    built = {
        match
        for path in dockerfiles().values()
        for match in re.findall(r"-t (meshplane/\S+) \.", path.read_text())
    }
    assert {image for image in used if image.startswith("meshplane/")} <= built
    assert "meshplane/proxy:0.1.0" in built
