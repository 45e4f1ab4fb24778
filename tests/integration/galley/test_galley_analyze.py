"""`meshctl analyze --galley` against a running Galley: what the mesh's own analyzers found in the
config it serves (Galley's ``/debug/analyze``), filtered and printed as istioctl prints."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshplane.shared.natsserver import NatsServer, free_port

from .process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONFIG = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  gateways: [missing-gateway]
  http: [{route: [{destination: {host: ratings.default.svc.cluster.local}}]}]
"""


async def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "meshplane.ctl.main", "analyze", *args]
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60)


async def test_meshctl_analyze_shows_what_the_running_galley_found(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "routes.yaml").write_text(CONFIG)
    with run_galley(nats_server.url, conf, tmp_path / "galley.log") as galley:
        await galley.wait_ready()
        address = f"127.0.0.1:{galley.debug_port}"  # --debug-addr, local-only

        run = await meshctl("--galley", address, "-A", "-o", "json")
        assert run.returncode == 0, run.stderr
        found = {(m["code"], m["origin"], m.get("reference")) for m in json.loads(run.stdout)}
        assert ("IST0101", "VirtualService shop/reviews", "routes.yaml:1") in found
        assert ("IST0101", "VirtualService default/ratings", "routes.yaml:8") in found

        # -n (default: default) keeps one namespace; -o log exits 79 on an Error, as istioctl.
        run = await meshctl("--galley", address)
        assert run.returncode == 79
        assert (
            "Error [IST0101] (VirtualService default/ratings routes.yaml:8) Referenced gateway not found: "
            '"missing-gateway"' in run.stdout
        )
        assert "shop/" not in run.stdout
        run = await meshctl("--galley", address, "-n", "shop", "-S", "IST0101=VirtualService shop/*")
        assert (run.returncode, run.stdout) == (0, "")
        assert "No validation issues found" in run.stderr

    run = await meshctl("--galley", f"127.0.0.1:{free_port()}")
    assert run.returncode == 2
    assert run.stderr.startswith("meshctl analyze: cannot read http://127.0.0.1:")
