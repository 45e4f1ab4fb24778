"""``meshctl create-remote-secret``: the hub's federation credentials, as a Secret or as files a
leaf nats-server joins with (a real leafnode join proves the files are what it needs)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from meshplane.ctl.main import main as meshctl
from meshplane.shared.bus.pki import BusPki, LeafRemote
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)


def test_prints_istios_remote_secret_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = BusPki.create(tmp_path / "bus")
    argv = ["create-remote-secret", "--name", "cluster1", "--bus-dir", str(hub.root)]
    assert meshctl([*argv, "--leafnode-url", "nats-leaf://127.0.0.1:7422"]) == 0
    secret = yaml.safe_load(capsys.readouterr().out)
    assert secret["metadata"] == {
        "name": "meshplane-remote-secret-cluster1",
        "namespace": "meshplane-system",
        "labels": {"istio/multiCluster": "true"},
        "annotations": {"networking.istio.io/cluster": "cluster1"},
    }
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {
        "ca.crt": hub.ca_file.read_bytes(),
        "nkey.seed": (hub.root / "federation" / "nkey.seed").read_bytes(),
        "url": b"nats-leaf://127.0.0.1:7422",
    }


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--leafnode-url", "127.0.0.1:7422"],
            "--leafnode-url '127.0.0.1:7422': expected nats-leaf://HOST:PORT",
        ),
        (
            ["--leafnode-url", "nats-leaf://h:1", "--name", "Cluster 1"],
            "--name 'Cluster 1': expected a DNS label",
        ),
        (
            ["--leafnode-url", "nats-leaf://h:1", "--bus-dir", "nowhere"],
            "--bus-dir nowhere: no federation identity",
        ),
    ],
)
def test_bad_input_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    BusPki.create(tmp_path / "bus")
    base = {"--name": "cluster1", "--bus-dir": str(tmp_path / "bus")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["create-remote-secret", *(x for kv in base.items() for x in kv)]
    assert meshctl(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshctl create-remote-secret: ") and error in err, err


async def test_written_files_let_a_leaf_join_the_hub(tmp_path: Path) -> None:
    hub_pki, leaf_pki = BusPki.create(tmp_path / "hub"), BusPki.create(tmp_path / "leaf")
    hub = NatsServer(
        tmp_path / "hub-store",
        config_file=hub_pki.server_config,
        domain="cluster1",
        leafnode_listen="127.0.0.1:0",
    ).start()
    leaf = None
    try:
        out = tmp_path / "remote"
        argv = ["create-remote-secret", "--name", "cluster1", "--bus-dir", str(hub_pki.root)]
        assert meshctl([*argv, "--leafnode-url", hub.leafnode_url, "--output-dir", str(out)]) == 0
        assert stat.S_IMODE((out / "nkey.seed").stat().st_mode) == 0o600
        assert (out / "url").read_text().strip() == hub.leafnode_url
        log = tmp_path / "leaf.log"
        leaf = NatsServer(
            tmp_path / "leaf-store",
            log_file=log,
            config_file=leaf_pki.server_config,
            domain="cluster2",
            leaf_remotes=[LeafRemote.from_dir(hub.leafnode_url, out)],
        ).start()

        async def joined() -> bool:
            return "Leafnode connection created" in log.read_text()

        await eventually(joined, "the leaf's connection to the hub")
    finally:
        if leaf is not None:
            leaf.stop()
        hub.stop()
