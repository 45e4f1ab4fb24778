"""Every command line in the manifests and the compose file is one the real programs accept.

Each program's ``--help`` (the installed console scripts) gives its flags and which of them are
required; the manifests may use only those flags and must pass every required one.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, Manifests

BIN = Path(sys.executable).parent

#: image -> the console script its ENTRYPOINT runs (docker/<image>.Dockerfile)
IMAGE_ENTRYPOINTS = {
    "meshplane/galley:0.1.0": "meshplane-galley",
    "meshplane/pilot:0.1.0": "meshplane-pilot",
    "meshplane/citadel:0.1.0": "meshplane-citadel",
    "meshplane/cni:0.1.0": "meshplane-cni-agent",
}


@cache
def cli(*command: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all flags, required flags) of ``command`` from its --help text."""
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    usage = result.stdout.split("\n\n", 1)[0]
    flags = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", result.stdout)) - {"--help"}
    optional = set(re.findall(r"\[(--[a-z0-9][a-z0-9-]*)", usage))
    required = set(re.findall(r"(?<![\[\w-])(--[a-z0-9][a-z0-9-]*)", usage)) - optional - {"--help"}
    return frozenset(flags), frozenset(required)


def flags_in(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def check(command: tuple[str, ...], args: list[str], where: str) -> None:
    known, required = cli(*command)
    used = flags_in(args)
    assert used <= known, f"{where}: {' '.join(command)} has no {sorted(used - known)}"
    assert required <= used, f"{where}: {' '.join(command)} needs {sorted(required - used)}"


def test_help_parsing_finds_required_flags() -> None:
    known, required = cli("meshplane-node-agent")
    assert {"--sds-socket", "--ca-addr"} <= required
    assert {"--ca-root", "--token-file", "--nats-url"} <= known - required


def container_commands(manifests: Manifests) -> list[tuple[str, tuple[str, ...], list[str]]]:
    out = []
    for workload in manifests.workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["image"] not in IMAGE_ENTRYPOINTS:
                continue
            program = container.get("command", [IMAGE_ENTRYPOINTS[container["image"]]])
            where = f"{workload['kind']}/{workload['metadata']['name']}"
            out.append((where, tuple(program), container.get("args", [])))
    return out


def test_kubernetes_containers_pass_flags_their_programs_accept(base: Manifests) -> None:
    commands = container_commands(base)
    assert {program[0] for _, program, _ in commands} == {
        "meshplane-galley",
        "meshplane-pilot",
        "meshplane-citadel",
        "meshplane-node-agent",
        "meshplane-cni-agent",
    }
    for where, program, args in commands:
        check(program, args, where)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize("service", ["galley", "pilot", "citadel", "node-agent"])
def test_compose_commands_pass_flags_their_programs_accept(service: str) -> None:
    spec = compose()["services"][service]
    program = tuple(spec.get("entrypoint", [IMAGE_ENTRYPOINTS[spec["image"]]]))
    check(program, spec["command"], f"compose {service}")


def test_compose_token_job_uses_meshctl_token_as_it_is() -> None:
    (script,) = compose()["services"]["workload-token"]["command"]
    words = shlex.split(script.split("&&")[0].split(">")[0])
    assert words[:2] == ["meshctl", "token"]
    check(("meshctl", "token"), words[2:], "compose workload-token")


def test_gateway_entrypoint_uses_meshctl_bootstrap_as_it_is() -> None:
    text = (REPO / "docker" / "gateway-entrypoint.sh").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.strip().startswith("meshctl bootstrap")]
    words = shlex.split(line)
    check(("meshctl", "bootstrap"), words[2:], "docker/gateway-entrypoint.sh")
    assert words[words.index("--type") + 1] == "router"
