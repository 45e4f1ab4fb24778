"""Multi-cluster over real federated buses: cluster 1's Pilot merges cluster 2's registry, read
over the leafnode that joins the clusters' nats-servers (JetStream domains cluster1, cluster2).

Real nats-servers (TLS, nkeys, the ``federation`` identity on the leafnode), cluster 2's real Galley
(``--cluster-id cluster2 --network net2``), cluster 1's real Pilot (``--remote-cluster cluster2``)
and a real Envoy in cluster 1: requests reach cluster 2's workload, cluster 2's config does not
reach cluster 1, and losing cluster 2 (its nats-server and Galley SIGKILLed) takes its endpoints
out of EDS after ``--remote-stale-after``; they return when it does.
"""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.proto.bus.v1 import registry_pb2, status_pb2
from meshplane.shared.bus import Buckets
from meshplane.shared.bus.buckets import config_key, service_key, workload_key
from meshplane.shared.bus.client import BUS_DIR_ENV
from meshplane.shared.testing.federation import FederatedCluster, federated_clusters, stop_all
from tests.integration.galley.process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NS = "shop"
HOST = f"web.{NS}.svc.cluster.local"
STALE = 3.0
#: cluster 2's Galley rewrites its record this often (its liveness for cluster 1)
FAST_REFRESH = {"MESHPLANE_COMPONENT_REFRESH_SECONDS": "0.5"}


def cluster2_config(app_ip: str, port: int) -> str:
    """Cluster 2's own web workload, and a route that must stay in cluster 2."""
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: {NS}}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {app_ip}, ports: {{http: {port}}}, labels: {{app: web}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web-cluster2-only, namespace: {NS}}}
spec:
  hosts: [web]
  http:
  - match: [{{uri: {{prefix: /c2only}}}}]
    directResponse: {{status: 299}}
  - route: [{{destination: {{host: web}}}}]
"""


async def _publish_cluster1(c1: FederatedCluster, kit: Any, app_ip: str, client_ip: str, port: int) -> None:
    """Cluster 1's registry and the client's Sidecar, written as cluster 1's Galley would."""
    bus = await c1.connect("galley")
    try:
        b = Buckets(bus)
        services, workloads = kit.http_service(HOST, NS, app_ip, port)
        for svc in services:
            await b.services.put(service_key(svc.namespace, svc.hostname), svc)
        for wl in workloads:
            wl.cluster_id = "cluster1"
            await b.workloads.put(workload_key(wl.namespace, wl.name), wl)
        sidecar = kit.bound_client_sidecar(NS, port, client_ip)
        await b.config.put(config_key(sidecar.group, sidecar.kind, sidecar.namespace, sidecar.name), sidecar)
    finally:
        await bus.close()


def _answers(client_ip: str, port: int, path: str = "/", n: int = 20) -> collections.Counter[str]:
    """Who answers ``n`` requests through cluster 1's sidecar (the app's name, or the status)."""
    out: collections.Counter[str] = collections.Counter()
    with httpx.Client(timeout=5) as client:
        for _ in range(n):
            resp = client.get(f"http://{client_ip}:{port}{path}", headers={"host": "web"})
            out[resp.json()["name"] if resp.status_code == 200 else str(resp.status_code)] += 1
    return out


def _remote(pilot: Any) -> dict[str, Any]:
    [row] = pilot.get("/debug/clusterz")
    return dict(row)


def test_cluster2_endpoints_reach_cluster1_its_config_does_not_and_a_lost_cluster_goes_stale(
    kit: Any, tmp_path: Path
) -> None:
    base = kit.loopback_base()
    client_ip, app1_ip, app2_ip = base + "10", base + "21", base + "22"
    port = kit.free_port_on([client_ip, app1_ip, app2_ip])
    app1, app2 = kit.App("web-cluster1", "v1", app1_ip, port), kit.App("web-cluster2", "v1", app2_ip, port)
    c1, c2 = clusters = federated_clusters(tmp_path / "buses")
    config_dir = tmp_path / "cluster2-config"
    config_dir.mkdir()
    (config_dir / "web.yaml").write_text(cluster2_config(app2_ip, port))
    galley_env = {BUS_DIR_ENV: str(c2.pki.root), **FAST_REFRESH}
    galley_args = ("--cluster-id", "cluster2", "--network", "net2")
    pilot = envoy = None
    try:
        asyncio.run(_publish_cluster1(c1, kit, app1_ip, client_ip, port))
        with run_galley(
            c2.server.url, config_dir, tmp_path / "galley2.log", *galley_args, env=galley_env
        ) as g2:
            asyncio.run(g2.wait_ready())
            flags = ("--xds-plaintext", "--remote-cluster", "cluster2", "--remote-stale-after", f"{STALE:g}s")
            pilot = kit.start_pilot(
                c1.server.url,
                tmp_path,
                "pilot-c1",
                {BUS_DIR_ENV: str(c1.pki.root), "CLUSTER_ID": "cluster1"},
                flags,
            )
            opts = kit.proxy_options(
                "sidecar", client_ip, "client-1", NS, {"app": "client"}, [f"127.0.0.1:{pilot.grpc}"], False
            )
            envoy = kit.start_envoy(tmp_path, "client", opts)

            # cluster 2's endpoint is in cluster 1's EDS: requests are split across both clusters
            kit.wait_until(
                lambda: _answers(client_ip, port)["web-cluster2"] > 0, 60, "an answer from cluster 2"
            )
            both = _answers(client_ip, port, n=40)
            assert set(both) == {"web-cluster1", "web-cluster2"}, both
            row = _remote(pilot)
            assert (row["id"], row["domain"], row["stale"], row["endpoints"]) == (
                "cluster2",
                "cluster2",
                False,
                1,
            )
            # isolation: cluster 2's VirtualService never reaches cluster 1's Pilot or Envoy
            assert set(_answers(client_ip, port, "/c2only/x")) <= {"web-cluster1", "web-cluster2"}
            assert not [c for c in pilot.get("/debug/configz") if c["kind"] == "VirtualService"]
            metrics = httpx.get(pilot.url + "/metrics", timeout=5).text
            assert 'pilot_remote_cluster_stale{cluster_id="cluster2"} 0.0' in metrics

            # losing cluster 2: its nats-server and Galley SIGKILLed
            g2.child.signal_group(signal.SIGKILL)
            c2.kill()
            kit.wait_until(lambda: _remote(pilot)["stale"], STALE + 15, "cluster 2 marked stale")
            kit.wait_until(
                lambda: set(_answers(client_ip, port)) == {"web-cluster1"},
                15,
                "cluster 2's endpoint out of EDS",
            )
            assert (
                'pilot_remote_cluster_stale{cluster_id="cluster2"} 1.0'
                in httpx.get(pilot.url + "/metrics").text
            )
            assert pilot.proc.poll() is None and httpx.get(pilot.url + "/ready").status_code == 200
        # cluster 2 comes back: its server (same store) rejoins the hub, a new Galley writes again
        c2.restart()
        with run_galley(
            c2.server.url, config_dir, tmp_path / "galley2b.log", *galley_args, env=galley_env
        ) as g2b:
            asyncio.run(g2b.wait_ready())
            kit.wait_until(lambda: not _remote(pilot)["stale"], 60, "cluster 2 fresh again")
            kit.wait_until(
                lambda: _answers(client_ip, port)["web-cluster2"] > 0, 30, "cluster 2 answering again"
            )
    finally:
        kit.stop_all(envoy, pilot, app1, app2)
        stop_all(clusters)


def test_a_remote_cluster_unreachable_at_start_does_not_delay_pilot(kit: Any, tmp_path: Path) -> None:
    """Pilot becomes ready on its own cluster while a named remote cluster's server is down;
    the remote joins later and its registry is merged then."""
    c1, c2 = clusters = federated_clusters(tmp_path / "buses")
    pilot = None
    try:
        c2.kill()
        flags = ("--xds-plaintext", "--remote-cluster", "cluster2=cluster2")
        pilot = kit.start_pilot(c1.server.url, tmp_path, "pilot-c1", {BUS_DIR_ENV: str(c1.pki.root)}, flags)
        row = _remote(pilot)
        assert row["stale"] and row["endpoints"] == 0 and row["synced"] == []
        c2.restart()

        async def publish() -> None:
            bus = await c2.connect("galley")
            try:
                b = Buckets(bus)
                await b.workloads.put(
                    "shop.w", registry_pb2.WorkloadInstance(name="w", namespace=NS, address="10.9.0.1")
                )
                record = status_pb2.ComponentInfo(component="galley", instance="g2")
                record.updated.GetCurrentTime()
                await b.components.put("galley.g2", record)
            finally:
                await bus.close()

        asyncio.run(publish())
        # the workload and the Galley record arrive on two independent watches, in either order
        kit.wait_until(
            lambda: (row := _remote(pilot))["endpoints"] == 1 and not row["stale"],
            60,
            "cluster 2's registry merged, and its Galley's record seen fresh, after it came up",
        )
    finally:
        kit.stop_all(pilot)
        stop_all(clusters)
