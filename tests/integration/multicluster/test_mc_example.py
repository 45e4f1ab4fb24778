"""``meshctl up --config-dir examples/multicluster``: two primaries on two networks, end to end.

The ingress gateway of cluster 1 answers from both clusters' helloworld (one instance each, so
about half each); cluster 2's instance is reached through cluster 2's east-west gateway (its
network's gateway in meshNetworks) with mutual TLS from the caller's proxy to the callee's, so
the callee names the caller's SPIFFE ID. A client inside cluster 2 also reaches both (each
cluster's Pilot merges the other's registry). ``meshctl proxy-status --state-dir`` shows every
cluster's proxies. Isolation (multi-primary): a config change in cluster 1 reaches cluster 1's
proxies and never cluster 2's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from meshplane.ctl.localmesh.testing import UpRun, copy_multicluster, running
from tests.integration.multicluster.mc_kit import (
    HOST,
    INGRESS_SA,
    REPO,
    admins,
    answers,
    bind_of,
    both_clusters,
    client_url,
    config_dump,
    endpoints,
    proxy_status,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpRun]:
    tmp_path = tmp_path_factory.mktemp("mc")
    config, port = copy_multicluster(REPO / "examples", tmp_path)
    with running(config, tmp_path / "state", tmp_path, f"http://127.0.0.1:{port}/", 240) as run:
        yield run


def test_both_clusters_answer_through_cluster1s_gateway_with_mtls_across_networks(mesh: UpRun) -> None:
    wait_until(
        lambda: both_clusters(mesh.gateway), 90, "answers from both clusters through the ingress gateway"
    )
    counts = answers(mesh.gateway, 60)
    assert set(counts) == {"cluster1", "cluster2"} and min(counts.values()) >= 15, counts  # split 1:1

    # cluster 1's gateway reaches cluster 2's instance through cluster 2's east-west gateway (not
    # its address, which is on the other network), and its own instance directly
    ingress = admins(mesh.state, "cluster1")["istio-ingressgateway.istio-system"]
    local = bind_of(mesh.config / "cluster1" / "services.yaml", "address")
    gateway2 = bind_of(mesh.config / "cluster2" / "gateways.yaml", "bind")
    assert endpoints(ingress) == {f"{local}:5000", f"{gateway2}:15443"}

    # mutual TLS end to end across the gateway: cluster 2's sidecar saw the ingress gateway's identity
    with httpx.Client(timeout=10) as c:
        served = next(r for r in (c.get(mesh.gateway) for _ in range(50)) if "in cluster2" in r.text)
    assert served.text.splitlines()[1] == f"caller {INGRESS_SA}", served.text

    # a client inside cluster 2 (its helloworld sidecar's egress) reaches both clusters too
    client2 = client_url(mesh.config, "cluster2")
    wait_until(lambda: both_clusters(client2, HOST), 60, "answers from both clusters to cluster 2's client")

    # every cluster's proxies in one proxy-status, labelled by cluster
    expected = {
        "helloworld-v1.sample@cluster1",
        "istio-ingressgateway.istio-system@cluster1",
        "istio-eastwestgateway-cluster1.istio-system@cluster1",
        "helloworld-v2.sample@cluster2",
        "istio-eastwestgateway-cluster2.istio-system@cluster2",
    }

    def synced() -> bool:
        rows = proxy_status(mesh.state)
        return set(rows) == expected and all(
            w in ("SYNCED", "NOT_SENT") for r in rows.values() for w in r[:4]
        )

    wait_until(synced, 30, "every cluster's proxies SYNCED in proxy-status --state-dir")
    rows = proxy_status(mesh.state)
    assert rows["helloworld-v2.sample@cluster2"][4] == "cluster2-pilot-local", rows


def _helloworld_cluster(admin: str) -> dict[str, Any]:
    """The sidecar's outbound helloworld cluster as Envoy holds it (config_dump)."""
    for c in config_dump(admin)["configs"]:
        for entry in c.get("dynamic_active_clusters", []):
            if entry["cluster"]["name"] == f"outbound|5000||{HOST}":
                return dict(entry["cluster"])
    raise AssertionError(f"no outbound|5000||{HOST} in {admin}'s config_dump")


def test_a_config_change_in_cluster1_does_not_reach_cluster2(mesh: UpRun) -> None:
    sidecar1 = admins(mesh.state, "cluster1")["helloworld-v1.sample"]
    sidecar2 = admins(mesh.state, "cluster2")["helloworld-v2.sample"]
    assert _helloworld_cluster(sidecar1).get("lb_policy") != "RANDOM"
    assert _helloworld_cluster(sidecar2).get("connect_timeout") == "1s"
    # cluster 1's DestinationRule changes: RANDOM load balancing
    rule1 = mesh.config / "cluster1" / "traffic.yaml"
    rule1.write_text(
        rule1.read_text().replace(
            "    tls: {mode: ISTIO_MUTUAL}",
            "    tls: {mode: ISTIO_MUTUAL}\n    loadBalancer: {simple: RANDOM}",
        )
    )
    wait_until(
        lambda: _helloworld_cluster(sidecar1).get("lb_policy") == "RANDOM",
        30,
        "cluster 1's change in cluster 1",
    )
    # then cluster 2's own DestinationRule changes (connect timeout 2s): once cluster 2's sidecar
    # has that later change, cluster 1's earlier one would have arrived too, had it crossed
    rule2 = mesh.config / "cluster2" / "traffic.yaml"
    rule2.write_text(rule2.read_text().replace("connectTimeout: 1s", "connectTimeout: 2s"))
    wait_until(
        lambda: _helloworld_cluster(sidecar2).get("connect_timeout") == "2s",
        30,
        "cluster 2's change in cluster 2",
    )
    assert _helloworld_cluster(sidecar2).get("lb_policy") != "RANDOM"
    assert _helloworld_cluster(sidecar1).get("connect_timeout") == "1s"
