"""`meshctl up` takes the config directory's own ``mesh.yaml`` as its MeshConfig (issue 15 item 1):
a copy of the bookinfo example with a ``mesh.yaml`` naming a trust domain and an access log runs
with both in effect (the SANs the sidecars check, Citadel's certificates that pass them, one log
line per request), and Galley does not take the file for Istio config."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.ctl.localmesh.testing import running_up
from meshplane.shared.testing.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]


def _istio_mutual_sans(admin: str) -> set[str]:
    """The URI SANs every ISTIO_MUTUAL (``tlsMode-istio``) cluster of the proxy checks."""
    dump: Any = httpx.get(f"http://{admin}/config_dump", timeout=5).json()
    sans: set[str] = set()
    clusters = [c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump")][0]
    for item in clusters.get("dynamic_active_clusters", []):
        for match in item["cluster"].get("transport_socket_matches", []):
            if match["name"] == "tlsMode-istio":
                ctx = match["transport_socket"]["typed_config"]["common_tls_context"]
                default = ctx["combined_validation_context"]["default_validation_context"]
                sans |= {m["matcher"]["exact"] for m in default["match_typed_subject_alt_names"]}
    return sans


def test_up_reads_the_config_directory_s_mesh_yaml(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    mesh = f"trustDomain: bookinfo.example\naccessLogFile: {access_log}\n"
    with running_up(REPO / "examples", tmp_path, extra={"mesh.yaml": mesh}) as up:
        assert f"MeshConfig from {up.config / 'mesh.yaml'}" in up.output()
        admins = json.loads((up.state / "proxies.json").read_text())
        sans = _istio_mutual_sans(admins["productpage-v1.bookinfo"])
        assert sans and all(s.startswith("spiffe://bookinfo.example/ns/bookinfo/sa/") for s in sans), sans
        # STRICT mTLS inside: answered only if Citadel's certificates carry that trust domain too
        response = httpx.get(up.gateway, timeout=10)
        assert response.status_code == 200 and "reviews" in response.text.lower()

        async def logged() -> bool:
            return access_log.exists() and '"GET / HTTP/1.1" 200' in access_log.read_text()

        asyncio.run(eventually(logged, "the gateway's access log line for GET /", 20))
        # Galley follows it as MeshConfig and does not also load it as an (invalid) config file
        galley_log = (up.state / "logs" / "meshplane-galley.log").read_text().splitlines()
        about = [line for line in galley_log if "mesh.yaml" in line]
        assert about and all('"level": "info"' in line for line in about), about
