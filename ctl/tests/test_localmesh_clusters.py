"""A multi-cluster config dir (``clusters.yaml``): the shipped example and the errors users see."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshplane.ctl.localmesh.clusters import is_multicluster, load_clusters
from meshplane.ctl.localmesh.plan import PlanError, load_plan
from meshplane.ctl.main import main as meshctl
from meshplane.shared.meshconfig import load_mesh_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEAD = "apiVersion: meshplane.io/v1alpha1\nkind: LocalClusters\nspec:\n  clusters:\n"


def test_the_example_is_two_primaries_on_two_networks_with_their_gateways() -> None:
    example = EXAMPLES / "multicluster"
    assert is_multicluster(example) and not is_multicluster(EXAMPLES / "bookinfo")
    clusters = load_clusters(example)
    assert clusters.mesh_id == "mesh1" and clusters.hub.name == "cluster1"
    assert [(c.name, c.network, c.profile, c.hub) for c in clusters.clusters] == [
        ("cluster1", "network1", "default", True),
        ("cluster2", "network2", "default", False),
    ]
    mesh = load_mesh_config(clusters.mesh_config)
    gateways = {n.name: [(g.address, g.port) for g in n.gateways] for n in mesh.mesh_networks.networks}
    assert gateways == {"network1": [("127.0.1.250", 15443)], "network2": [("127.0.2.250", 15443)]}
    one, two = (load_plan(c.config_dir, mesh, c.network) for c in clusters.clusters)
    assert (one.gateway_bind, one.gateway_port) == ("127.0.0.1", 8080)
    assert (one.eastwest_bind, one.eastwest_port) == ("127.0.1.250", 15443)
    assert (two.gateway_port, two.eastwest_bind, two.eastwest_port) == (0, "127.0.2.250", 15443)
    assert [(w.proxy, w.address) for w in one.workloads] == [("helloworld-v1.sample", "127.0.1.1")]
    assert [(w.proxy, w.address) for w in two.workloads] == [("helloworld-v2.sample", "127.0.2.1")]
    assert "cluster2" in two.workloads[0].command


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (
            "  - {clusterName: c1, network: n1}\n  - {clusterName: c2, profile: remote}\n",
            "needs remotePilotAddress",
        ),
        ("  - {clusterName: c1, profile: remote, remotePilotAddress: c2}\n  - {clusterName: c2}\n", ""),
        (
            "  - {clusterName: c1, profile: remote, remotePilotAddress: c1}\n  - {clusterName: c2}\n",
            "remotePilotAddress 'c1': not a primary cluster",
        ),
        (
            "  - {clusterName: c1, remotePilotAddress: c2}\n  - {clusterName: c2}\n",
            "for profile: remote only",
        ),
        ("  - {clusterName: c1, profile: primary}\n", "profile 'primary' must be one of default, remote"),
        ("  - {clusterName: c1, networks: n1}\n", "unknown field(s) networks"),
        ("  - {clusterName: Cluster_1}\n", "clusterName 'Cluster_1' must be a DNS label"),
        ("  - {clusterName: c1}\n  - {clusterName: c1}\n", "cluster c1 is listed twice"),
        ("  - {clusterName: c3}\n", "no directory"),
    ],
)
def test_bad_clusters_files_are_refused_naming_the_entry(tmp_path: Path, entries: str, error: str) -> None:
    for name in ("c1", "c2"):
        (tmp_path / name).mkdir()
    (tmp_path / "clusters.yaml").write_text(HEAD + entries)
    if not error:
        assert [c.profile for c in load_clusters(tmp_path).clusters] == ["remote", "default"]
        return
    with pytest.raises(PlanError) as exc:
        load_clusters(tmp_path)
    assert str(tmp_path / "clusters.yaml") in str(exc.value) and error in str(exc.value)


def test_meshctl_up_refuses_a_bad_clusters_file_and_cluster_on_one_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clusters.yaml").write_text("kind: Clusters\n")
    assert meshctl(["up", "--config-dir", str(tmp_path), "--state-dir", str(tmp_path / "s")]) == 2
    assert "expected apiVersion: meshplane.io/v1alpha1, kind: LocalClusters" in capsys.readouterr().err
    single = tmp_path / "single"
    shutil.copytree(EXAMPLES / "bookinfo", single)
    argv = ["up", "--config-dir", str(single), "--cluster", "cluster1", "--state-dir", str(tmp_path / "s")]
    assert meshctl(argv) == 2
    assert "--cluster: " in capsys.readouterr().err
    multi = tmp_path / "multi"
    shutil.copytree(EXAMPLES / "multicluster", multi)
    argv = ["up", "--config-dir", str(multi), "--cluster", "cluster3", "--state-dir", str(tmp_path / "s")]
    assert meshctl(argv) == 2
    assert "no cluster 'cluster3' in clusters.yaml (clusters: cluster1, cluster2)" in capsys.readouterr().err
