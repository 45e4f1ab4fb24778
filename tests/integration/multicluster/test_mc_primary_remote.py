"""primary-remote: cluster 2 runs no Pilot; its proxies use cluster 1's (``remotePilotAddress``,
which ``meshctl up`` turns into their bootstrap's discovery address), and cluster 1's Pilot
sees cluster 2's registry through the federation.

As with Istio's config cluster, the primary's directory holds the Istio config that applies to
the remote's proxies (here cluster 2's Sidecar and east-west Gateway, copied in under new
names); cluster 2's own directory keeps its WorkloadEntry and what ``meshctl up`` runs.
A client inside cluster 2 (its sidecar, served by cluster 1's Pilot) reaches helloworld in
cluster 2 directly and in cluster 1 through cluster 1's east-west gateway.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.ctl.localmesh.testing import copy_multicluster, running
from tests.integration.multicluster.mc_kit import (
    HOST,
    REPO,
    admins,
    bind_of,
    both_clusters,
    client_url,
    endpoints,
    proxy_status,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_remote_proxies_served_by_the_primarys_pilot_reach_both_clusters(tmp_path: Path) -> None:
    config, port = copy_multicluster(REPO / "examples", tmp_path)
    clusters = config / "clusters.yaml"
    clusters.write_text(
        clusters.read_text().replace(
            "    network: network2\n",
            "    network: network2\n    profile: remote\n    remotePilotAddress: cluster1\n",
        )
    )
    for name in ("sidecars.yaml", "gateways.yaml"):
        text = (config / "cluster2" / name).read_text()
        text = text.replace("name: cross-network-gateway", "name: cross-network-gateway-network2")
        (config / "cluster1" / f"cluster2-{name}").write_text(text)
    with running(config, tmp_path / "state", tmp_path, f"http://127.0.0.1:{port}/", 240) as mesh:
        assert "cluster2/meshplane-pilot" not in mesh.pids() and "cluster1/meshplane-pilot" in mesh.pids()
        # the remote's proxies are connected to the primary's Pilot; proxy-status names their own cluster
        remote = {"helloworld-v2.sample@cluster2", "istio-eastwestgateway-cluster2.istio-system@cluster2"}
        wait_until(
            lambda: remote <= set(proxy_status(mesh.state)), 60, "cluster 2's proxies on cluster 1's Pilot"
        )
        assert proxy_status(mesh.state)["helloworld-v2.sample@cluster2"][4] == "cluster1-pilot-local"

        client2 = client_url(mesh.config, "cluster2")
        wait_until(lambda: both_clusters(client2, HOST), 90, "cluster 2's client answered by both clusters")
        # its own cluster's instance directly, cluster 1's through cluster 1's east-west gateway
        sidecar2 = admins(mesh.state, "cluster2")["helloworld-v2.sample"]
        local = bind_of(config / "cluster2" / "services.yaml", "address")
        gateway1 = bind_of(config / "cluster1" / "gateways.yaml", "bind")
        assert endpoints(sidecar2) == {f"{local}:5000", f"{gateway1}:15443"}
        # and cluster 1's ingress gateway still reaches both
        wait_until(lambda: both_clusters(mesh.gateway), 30, "cluster 1's gateway answered by both clusters")
