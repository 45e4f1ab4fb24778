"""`meshctl up` applies ProxyConfig (issue 15 item 4): ``--mesh-config``'s ``defaultConfig`` and
the ProxyConfig resources of the config directory reach each proxy's real Envoy (its command
line, its stats), with Istio's precedence: the reviews workloads' own ProxyConfig over the
namespace's, over ``defaultConfig``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from meshplane.ctl.localmesh.testing import running_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
PROXY_CONFIGS = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: bookinfo, namespace: bookinfo}
spec: {concurrency: 2}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  concurrency: 3
"""
MESH = """defaultConfig:
  drainDuration: 6s
  proxyStatsMatcher: {inclusionPrefixes: [http.admin.]}
"""


def test_up_applies_default_config_and_proxy_config_resources(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    extra = {"proxy-configs.yaml": PROXY_CONFIGS}
    with running_up(REPO / "examples", tmp_path, extra=extra, args=("--mesh-config", str(mesh))) as up:
        admins = json.loads((up.state / "proxies.json").read_text())

        def options(proxy: str) -> dict[str, object]:
            info = httpx.get(f"http://{admins[proxy]}/server_info", timeout=5).json()
            return dict(info["command_line_options"])

        reviews, ratings = options("reviews-v1.bookinfo"), options("ratings-v1.bookinfo")
        gateway = options("istio-ingressgateway.istio-system")
        assert (reviews["concurrency"], ratings["concurrency"], gateway["concurrency"]) == (3, 2, 1)
        assert reviews["drain_time"] == gateway["drain_time"] == "6s"  # defaultConfig: every proxy
        stats = httpx.get(f"http://{admins['ratings-v1.bookinfo']}/stats", timeout=5).text
        names = {line.split(":")[0] for line in stats.splitlines()}
        assert "http.admin.downstream_rq_total" in names and "server.live" in names
        assert not any(n.startswith("runtime.") for n in names)
        # and the mesh still serves through the gateway
        assert httpx.get(up.gateway, timeout=10).status_code == 200
