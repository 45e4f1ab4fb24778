"""One cluster of a multi-cluster ``meshctl up`` (``localmesh.multi``): the flags its components
get, its proxies' bootstrap (cluster, network, which Pilot) and its gateways, without starting
anything."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from meshplane.ctl.bootstrap import BootstrapOptions
from meshplane.ctl.localmesh.clusters import load_clusters
from meshplane.ctl.localmesh.multi import ClusterMesh
from meshplane.ctl.localmesh.plan import load_plan
from meshplane.ctl.localmesh.supervisor import StartError, Supervisor
from meshplane.shared.meshconfig import load_mesh_config
from meshplane.shared.natsserver import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multicluster"


def _mesh(tmp_path: Path, name: str, remote: bool = False) -> ClusterMesh:
    config = tmp_path / "mc"
    shutil.copytree(EXAMPLE, config)
    if remote:
        path = config / "clusters.yaml"
        text = path.read_text().replace(
            "    network: network2\n",
            "    network: network2\n    profile: remote\n    remotePilotAddress: cluster1\n",
        )
        path.write_text(text)
    clusters = load_clusters(config)
    spec = clusters.get(name)
    plan = load_plan(spec.config_dir, load_mesh_config(clusters.mesh_config), spec.network)
    sup = Supervisor(tmp_path)
    return ClusterMesh(plan, spec.config_dir, tmp_path / "state" / name, sup, spec=spec, clusters=clusters)


def test_primary_components_know_their_cluster_and_every_other(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path, "cluster1")
    assert mesh.runs_pilot
    assert mesh._flags("galley") == ["--cluster-id", "cluster1", "--network", "network1"]
    assert mesh._flags("pilot") == ["--cluster-id", "cluster1", "--remote-cluster", "cluster2"]
    assert mesh._name("meshplane-pilot") == "cluster1/meshplane-pilot"
    gateways = {gw.proxy: (listens, gw.labels) for gw, listens in mesh.gateways()}
    assert gateways["istio-ingressgateway.istio-system"][0] == "127.0.0.1:8080"
    listens, labels = gateways["istio-eastwestgateway-cluster1.istio-system"]
    assert listens == "127.0.1.250:15443"
    assert labels["istio"] == "eastwestgateway" and labels["topology.istio.io/network"] == "network1"
    mesh.pilot_addr = "127.0.0.1:15012"
    opts = mesh._bootstrap(BootstrapOptions(pilots=[mesh.pilot_addr]))
    assert (opts.cluster_id, opts.mesh_id, opts.pilots) == ("cluster1", "mesh1", ["127.0.0.1:15012"])
    assert opts.extra_metadata == {"NETWORK": "network1"}
    # one intermediate per cluster under one root, made on first use
    assert (mesh.ca_dir / "ca-cert.pem").is_file()
    assert (mesh.root / "cacerts" / "root-cert.pem").read_bytes() == (
        mesh.ca_dir / "root-cert.pem"
    ).read_bytes()


def test_a_remote_clusters_proxies_use_the_primarys_pilot(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path, "cluster2", remote=True)
    assert not mesh.runs_pilot
    with pytest.raises(StartError, match="cluster cluster1 is not running here"):
        mesh.start_control_plane()
    (mesh.root / "cluster1").mkdir(parents=True)
    (mesh.root / "cluster1" / "cluster.json").write_text(json.dumps({"pilot": "127.0.0.1:25012"}))
    mesh.pilot_addr = "127.0.0.1:25012"  # what start_control_plane reads from cluster1's record
    opts = mesh._bootstrap(BootstrapOptions(pilots=[mesh.pilot_addr]))
    assert (opts.cluster_id, opts.pilots, opts.extra_metadata) == (
        "cluster2",
        ["127.0.0.1:25012"],
        {"NETWORK": "network2"},
    )
    # a ProxyConfig discoveryAddress still wins, as in Istio
    own = mesh._bootstrap(
        BootstrapOptions(pilots=["x:1"], proxy_config={"discoveryAddress": "127.0.0.9:15012"})
    )
    assert own.pilots == ["127.0.0.9:15012"]


def test_a_restarted_hub_listens_for_leaves_where_it_did(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path, "cluster1")
    assert mesh._hub_listen() == "127.0.0.1:0"  # first run: any free port
    port = free_port()
    mesh.state.mkdir(parents=True)
    (mesh.state / "cluster.json").write_text(json.dumps({"leafnode_url": f"nats-leaf://127.0.0.1:{port}"}))
    assert mesh._hub_listen() == f"127.0.0.1:{port}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert mesh._hub_listen() == "127.0.0.1:0"  # taken meanwhile: a new one
