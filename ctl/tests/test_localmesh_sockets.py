"""SDS socket paths of ``meshctl up``: every one fits Linux's 108-byte socket path, stays each
proxy's own, and keeps the readable ``<proxy>.sock`` name where it fits."""

from __future__ import annotations

import socket
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from meshplane.ctl.localmesh.mesh import EASTWEST, GATEWAY, MAX_SOCKET_PATH, LocalMesh
from meshplane.ctl.localmesh.plan import Plan
from meshplane.ctl.localmesh.supervisor import Supervisor


def mesh(state: Path) -> LocalMesh:
    return LocalMesh(Plan(), state, state, Supervisor(state / "logs"))


def bindable(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # raises if the kernel refuses the path


def test_short_state_dir_keeps_the_proxy_name() -> None:
    # pytest's own tmp_path can be deep enough (under xdist) to need the short name: use a short one
    with tempfile.TemporaryDirectory(prefix="mp") as short:
        m = mesh(Path(short))
        assert m.sds_socket(GATEWAY) == Path(short) / "sds" / f"{GATEWAY.proxy}.sock"


@pytest.mark.parametrize("depth", [40, 60, 75])
def test_a_long_proxy_name_in_a_deep_state_dir_still_binds(tmp_path: Path, depth: int) -> None:
    state = tmp_path / ("d" * max(1, depth - len(str(tmp_path))))
    state.mkdir()
    m = mesh(state)
    long_names = [replace(EASTWEST, name=f"{EASTWEST.name}-cluster{i}") for i in (1, 2)]
    paths = [m.sds_socket(w) for w in [GATEWAY, *long_names]]
    assert len(set(paths)) == 3  # each proxy its own socket
    for path in paths:
        assert len(str(path)) <= MAX_SOCKET_PATH
        bindable(path)
    assert m.sds_socket(long_names[0]) == paths[1]  # the same proxy, the same path, every time
