"""Read a multi-cluster config directory: ``clusters.yaml`` plus one subdirectory per cluster.

A config directory with a ``clusters.yaml`` holds several clusters of one mesh. The file is
meshplane's (``apiVersion: meshplane.io/v1alpha1, kind: LocalClusters``), its fields named as
Istio's install values name them (``global.meshID``, ``global.multiCluster.clusterName``,
``global.network``, the ``remote`` profile, ``global.remotePilotAddress``)::

    apiVersion: meshplane.io/v1alpha1
    kind: LocalClusters
    spec:
      meshID: mesh1
      clusters:
      - clusterName: cluster1     # CLUSTER_ID; its Istio YAML is in cluster1/
        network: network1
      - clusterName: cluster2
        network: network2
        profile: remote           # no Pilot: its proxies use cluster1's (remotePilotAddress)
        remotePilotAddress: cluster1

``profile`` is ``default`` (a primary: Galley, Pilot, Citadel) or ``remote`` (Galley and Citadel,
no Pilot). The first cluster's bus is the federation hub: every other cluster's bus is its
leafnode. The directory's ``mesh.yaml`` (if any) is every cluster's MeshConfig, where
``meshNetworks`` says which network each cluster is on and where its east-west gateway is.
Problems raise ``PlanError`` naming the file and entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl.localmesh.plan import LOCAL_API, PlanError

CLUSTERS_FILE = "clusters.yaml"
MESH_FILE = "mesh.yaml"
PROFILES = ("default", "remote")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    network: str
    config_dir: Path
    #: ``default`` (primary) or ``remote``
    profile: str = "default"
    #: a remote's primary: the cluster whose Pilot serves its proxies
    remote_pilot: str = ""
    #: the federation hub (the first cluster)
    hub: bool = False

    @property
    def primary(self) -> bool:
        return self.profile == "default"


@dataclass(frozen=True)
class Clusters:
    mesh_id: str
    clusters: tuple[ClusterSpec, ...]
    #: the directory's ``mesh.yaml`` (every cluster's MeshConfig), None without one
    mesh_config: Path | None

    def get(self, name: str) -> ClusterSpec:
        for c in self.clusters:
            if c.name == name:
                return c
        raise PlanError(f"no cluster {name!r} in {CLUSTERS_FILE} (clusters: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clusters]

    @property
    def hub(self) -> ClusterSpec:
        return self.clusters[0]


def is_multicluster(config_dir: Path) -> bool:
    return (config_dir / CLUSTERS_FILE).is_file()


def _cluster(entry: Any, index: int, config_dir: Path, where: str) -> ClusterSpec:
    at = f"{where}: spec.clusters[{index}]"
    if not isinstance(entry, dict):
        raise PlanError(f"{at}: expected a mapping with clusterName and network")
    name = str(entry.get("clusterName") or "")
    if not _LABEL.match(name):
        raise PlanError(f"{at}: clusterName {name!r} must be a DNS label (lower case letters, digits, '-')")
    profile = str(entry.get("profile") or "default")
    if profile not in PROFILES:
        raise PlanError(f"{at}: profile {profile!r} must be one of {', '.join(PROFILES)}")
    remote_pilot = str(entry.get("remotePilotAddress") or "")
    if profile == "remote" and not remote_pilot:
        raise PlanError(f"{at}: a remote cluster needs remotePilotAddress (the primary cluster serving it)")
    if profile == "default" and remote_pilot:
        raise PlanError(f"{at}: remotePilotAddress is for profile: remote only")
    unknown = sorted(set(entry) - {"clusterName", "network", "profile", "remotePilotAddress"})
    if unknown:
        raise PlanError(f"{at}: unknown field(s) {', '.join(unknown)}")
    sub = config_dir / name
    if not sub.is_dir():
        raise PlanError(f"{at}: no directory {sub} with cluster {name}'s Istio YAML")
    return ClusterSpec(
        name=name,
        network=str(entry.get("network") or ""),
        config_dir=sub,
        profile=profile,
        remote_pilot=remote_pilot,
        hub=index == 0,
    )


def load_clusters(config_dir: Path) -> Clusters:
    """The clusters of ``config_dir/clusters.yaml``; raises PlanError."""
    path = config_dir / CLUSTERS_FILE
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PlanError(f"{where}: cannot read YAML: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("apiVersion") != LOCAL_API or doc.get("kind") != "LocalClusters":
        raise PlanError(f"{where}: expected apiVersion: {LOCAL_API}, kind: LocalClusters")
    spec = doc.get("spec") or {}
    entries = spec.get("clusters") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PlanError(f"{where}: spec.clusters must list at least one cluster")
    clusters = tuple(_cluster(e, i, config_dir, where) for i, e in enumerate(entries))
    names = [c.name for c in clusters]
    for c in clusters:
        if names.count(c.name) > 1:
            raise PlanError(f"{where}: cluster {c.name} is listed twice")
        if c.remote_pilot:
            primary = next((p for p in clusters if p.name == c.remote_pilot), None)
            if primary is None or not primary.primary:
                raise PlanError(
                    f"{where}: cluster {c.name}: remotePilotAddress {c.remote_pilot!r}: not a primary cluster"
                )
    mesh = config_dir / MESH_FILE
    return Clusters(str(spec.get("meshID") or "cluster.local"), clusters, mesh if mesh.is_file() else None)
