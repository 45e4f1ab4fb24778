"""Galley follows its MeshConfig file as Kubernetes updates a mounted ConfigMap (the ``..data``
symlink swapped to a new directory), refusing a broken version and keeping the last good one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from meshplane.galley.sources.meshfile import MeshConfigFile
from meshplane.proto.bus.v1 import config_pb2
from meshplane.shared.meshconfig import MeshConfig
from meshplane.shared.meshconfig_bus import mesh_config_from_bus
from meshplane.shared.testing.polling import eventually


def _kubelet_write(mount: Path, version: int, text: str) -> None:
    """What the kubelet does on a ConfigMap update: a new directory, ``..data`` swapped to it."""
    new = mount / f"..v{version}"
    new.mkdir()
    (new / "mesh").write_text(text)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(new.name)
    tmp.rename(mount / "..data")
    if not (mount / "mesh").is_symlink():
        (mount / "mesh").symlink_to("..data/mesh")


async def test_follows_a_configmap_volume_and_keeps_the_last_good_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    _kubelet_write(mount, 1, "trustDomain: old.example\n")
    seen: list[tuple[MeshConfig, config_pb2.ConfigResource]] = []
    source = MeshConfigFile(mount / "mesh", lambda mesh, msg: seen.append((mesh, msg)))
    assert source.refresh()
    assert [m.trust_domain for m, _ in seen] == ["old.example"]
    assert mesh_config_from_bus(seen[0][1]).trust_domain == "old.example"
    stop = asyncio.Event()
    task = asyncio.create_task(source.watch(stop))
    try:
        await asyncio.sleep(0)  # let the watch start; a write before it is caught up by its rescans
        _kubelet_write(mount, 2, "trustDomain: new.example\nrootNamespace: mesh-root\n")

        async def got_new() -> bool:
            return [m.trust_domain for m, _ in seen] == ["old.example", "new.example"]

        await eventually(got_new, "the new MeshConfig from the swapped ..data", 10)
        assert seen[-1][0].root_namespace == "mesh-root"

        with caplog.at_level(logging.ERROR, "meshplane.galley.sources.meshfile"):
            _kubelet_write(mount, 3, "trustDomain: [not, a, string]\n")

            async def refused() -> bool:
                return "trustDomain: expected a domain such as cluster.local" in source.error

            await eventually(refused, "the broken MeshConfig refused", 10)
        assert any("keeping the last valid MeshConfig" in r.getMessage() for r in caplog.records)
        assert len(seen) == 2  # nothing handed on: the last good one stays
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_mesh_networks_are_published_unwarned_and_bad_ones_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mesh"
    path.write_text(
        "meshNetworks:\n  networks:\n    network1:\n      endpoints: [{fromRegistry: cluster1}]\n"
        "      gateways: [{address: 192.0.2.10, port: 15443}]\n"
    )
    seen: list[config_pb2.ConfigResource] = []
    source = MeshConfigFile(path, lambda mesh, msg: seen.append(msg))
    with caplog.at_level(logging.WARNING, "meshplane.galley.sources.meshfile"):
        assert source.refresh()
    assert "not applied" not in caplog.text
    (network,) = mesh_config_from_bus(seen[0]).mesh_networks.networks
    assert (network.name, network.from_registries, network.gateways[0].address) == (
        "network1",
        ("cluster1",),
        "192.0.2.10",
    )
    path.write_text("meshNetworks:\n  networks:\n    network1:\n      gateways: [{address: 192.0.2.10}]\n")
    assert not source.refresh()
    assert "meshNetworks.networks.network1.gateways[0].port: expected a port" in source.error
    assert len(seen) == 1
