"""Multi-cluster fields of the registry Galley publishes: every instance names Galley's cluster, and
its network comes from the labels Istio reads (pod / WorkloadEntry, then namespace, then --network)."""

from __future__ import annotations

from pathlib import Path

from meshplane.galley.registry.builder import build_registry
from meshplane.galley.settings import parse_args
from meshplane.galley.sources.directory import DirectorySource, Snapshot

CONFIG = """apiVersion: v1
kind: Namespace
metadata: {name: east, labels: {topology.istio.io/network: net-east}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: east}
spec:
  hosts: [db.east.internal]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: east}
spec:
  hosts: [cache.east.internal]
  ports: [{number: 6379, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.9}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: labelled, namespace: east}
spec: {address: 10.0.0.1, labels: {app: db, topology.istio.io/network: net-vm}, network: ignored}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: field, namespace: east}
spec: {address: 10.0.0.2, labels: {app: db}, network: net-field}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: plain}
spec:
  hosts: [web.plain.internal]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
"""


def objects(tmp_path: Path) -> Snapshot:
    (tmp_path / "config.yaml").write_text(CONFIG)
    seen: list[Snapshot] = []
    source = DirectorySource(tmp_path, seen.append)
    source.refresh()
    return source.snapshot


def test_instances_carry_the_cluster_and_the_network_istio_would_give_them(tmp_path: Path) -> None:
    _, workloads = build_registry(objects(tmp_path).values(), "cluster2", "net-default")
    got = {k: (w.cluster_id, w.network) for k, w in workloads.items()}
    assert got == {
        "east.labelled": ("cluster2", "net-vm"),  # the WorkloadEntry's label wins
        "east.field": ("cluster2", "net-field"),  # then its network field
        "east.cache-0": ("cluster2", "net-east"),  # then its namespace's label
        "plain.web-0": ("cluster2", "net-default"),  # then Galley's --network
    }


def test_without_flags_the_cluster_is_istios_default_and_the_network_empty(tmp_path: Path) -> None:
    s = parse_args([])
    assert (s.cluster_id, s.network) == ("Kubernetes", "")
    _, workloads = build_registry(objects(tmp_path).values(), s.cluster_id, s.network)
    assert workloads["plain.web-0"].network == "" and workloads["plain.web-0"].cluster_id == "Kubernetes"
    s = parse_args(["--cluster-id", "cluster2", "--network", "net2"])
    assert (s.cluster_id, s.network) == ("cluster2", "net2")
