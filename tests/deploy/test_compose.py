"""docker-compose.yml: valid Compose, scalable pilot, health-gated start order, real Dockerfiles."""

from __future__ import annotations

import copy
import json
from graphlib import TopologicalSorter
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import REPO

#: Services that run once and exit (others wait for them to complete, not to be healthy).
ONE_SHOT = {"workload-token", "bus-credentials"}

SCHEMA = json.loads((REPO / "tests" / "deploy" / "schemas" / "compose_spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


MERGE = "tag:yaml.org,2002:merge"  # ``<<: *anchor``, which may repeat


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML keeps only the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value if k.tag != MERGE]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {twice}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_no_key_is_given_twice() -> None:
    """A repeated key (``volumes:`` twice in one service) silently drops the first list."""
    yaml.load((REPO / "docker-compose.yml").read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft201909Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_schema_check_rejects_a_misspelt_service_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["pilot"]["healtcheck"] = broken["services"]["pilot"].pop("healthcheck")
    errors = compose_errors(broken)
    assert len(errors) == 1 and errors[0].startswith("services.pilot"), errors


def test_the_whole_mesh_is_there(compose: dict[str, Any]) -> None:
    assert {"nats", "galley", "pilot", "citadel", "node-agent", "gateway", "productpage"} <= set(
        compose["services"]
    )


def test_pilot_can_be_scaled(compose: dict[str, Any]) -> None:
    """`docker compose up --scale pilot=3` needs no fixed name and no published host port."""
    pilot = compose["services"]["pilot"]
    assert "container_name" not in pilot
    assert "ports" not in pilot
    assert {str(port) for port in pilot["expose"]} == {"15012", "15014"}  # xDS over TLS, monitoring


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1, name


def test_start_order_waits_on_health_and_has_no_cycle(compose: dict[str, Any]) -> None:
    services = compose["services"]
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
        graph[name] = set(depends)
    order = list(TopologicalSorter(graph).static_order())
    assert order.index("nats") < order.index("galley") < order.index("pilot") < order.index("gateway")
    assert order.index("citadel") < order.index("workload-token") < order.index("node-agent")
    assert order.index("node-agent") < order.index("gateway")


def test_builds_point_at_existing_dockerfiles_and_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert not image.endswith(":latest") and ":" in image, f"{name}: pin the image tag"
        if "build" not in service:
            continue
        build = service["build"]
        assert build["context"] == "."
        dockerfile = REPO / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {build['dockerfile']} does not exist"
        assert image.startswith("meshplane/") and image.endswith(":0.1.0"), name
        assert f"-t {image} " in dockerfile.read_text(), f"{name}: image name differs from its Dockerfile"


def test_services_built_here_share_one_dockerfile_per_image(compose: dict[str, Any]) -> None:
    dockerfile_of: dict[str, str] = {}
    for service in compose["services"].values():
        if "build" in service:
            assert (
                dockerfile_of.setdefault(service["image"], service["build"]["dockerfile"])
                == service["build"]["dockerfile"]
            )


def test_galley_reads_the_mounted_bookinfo_directory(compose: dict[str, Any]) -> None:
    galley = compose["services"]["galley"]
    assert "--config-dir=/config" in galley["command"]
    (volume,) = [v for v in galley["volumes"] if v.endswith(":/config:ro")]
    source, target, mode = volume.split(":")
    assert (REPO / source).is_dir() and source == "./examples/bookinfo"
    assert (target, mode) == ("/config", "ro")


def test_services_reach_the_bus_and_ca_by_compose_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("galley", "pilot", "citadel"):
        assert "--nats-url=nats://nats:4222" in services[name]["command"], name
    assert "--ca-addr=citadel:8060" in services["node-agent"]["command"]
    assert services["node-agent"]["entrypoint"] == ["meshplane-node-agent"]
    assert services["gateway"]["environment"]["PILOT_ADDR"] == "pilot:15012"
    shared = {v.split(":")[0] for v in services["gateway"]["volumes"]} & {
        v.split(":")[0] for v in services["node-agent"]["volumes"]
    }
    assert shared == {"sds-socket"}
    assert set(compose["volumes"]) >= {"sds-socket", "citadel-ca", "nats-data"}
