"""The side-by-side benchmark with sovereign (``benchmarks/sovereign``) still works, at tiny scale.

Offline, so no sovereign from PyPI here: the meshplane side runs end to end (real nats-server,
Pilot, two real Envoys, one change), and the sovereign side's templates are rendered and checked
by the real Envoy (``--mode validate``) so the config sovereign would serve cannot rot either.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.sovereign.meshplane_side import MeshplaneSide  # noqa: E402
from benchmarks.sovereign.run import run_once  # noqa: E402
from benchmarks.sovereign.sovereign_side import TEMPLATES, SovereignSide, services_data  # noqa: E402
from meshplane.shared.envoyproc import find_envoy  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_meshplane_side_tiny_scale_all_envoys_ready_then_get_the_new_cluster(tmp_path: Path) -> None:
    side = MeshplaneSide(tmp_path / "cp", services=10)
    res = run_once(side, tmp_path, envoys=2, services=10, timeout=45, idle=0.2)
    assert res.notes == []
    assert (res.ready_count, res.change_count) == (2, 2)
    assert 0 < res.ready_s < 45 and 0 < res.change_s < 45
    assert res.pss_mb > 0 and res.peak_rss_mb >= res.rss_mb > 0
    assert side.pilot is None and side.nats.proc is None  # everything it started is stopped


def _template(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"sov_{name}", TEMPLATES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _envoy_accepts(path: Path) -> None:
    done = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_sovereign_templates_render_config_real_envoy_accepts(tmp_path: Path) -> None:
    services = services_data(10)
    clusters = _template("clusters").call(services=services, discovery_request=None)
    listeners = _template("listeners").call(services=services, resource_names=[])
    assert [c["name"] for c in clusters][:2] == [
        "outbound|9080||svc-0.bench.svc.cluster.local",
        "outbound|9080||svc-1.bench.svc.cluster.local",
    ]
    vhosts = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    assert len(clusters) == len(vhosts) == 10
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"clusters": clusters, "listeners": listeners},
    }
    path = tmp_path / "static.json"
    path.write_text(json.dumps(bootstrap))
    _envoy_accepts(path)
    # the REST bootstrap the sovereign side gives each Envoy is valid too
    side = SovereignSide(tmp_path / "sov", 10, script=tmp_path / "unused", refresh_delay=1.0)
    side.port = 18080
    path.write_text(json.dumps(side.bootstrap(0, 0)))
    _envoy_accepts(path)
