"""Two clusters' buses joined by a real leafnode, as multi-cluster meshplane runs them.

Each cluster has its own bus directory (CA, server certificate, a seed per identity, ``admin``
for the test harness), its own nats-server and its own JetStream domain (the cluster ID). The
first is the hub (it listens for leafnode connections); the others join it as leaves with the
hub's ``federation`` credentials (``meshplane.shared.bus.pki.LeafRemote``).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from meshplane.shared.bus import Bus, BusOptions
from meshplane.shared.bus.pki import BusPki, LeafRemote
from meshplane.shared.natsserver import NatsServer


@dataclass
class FederatedCluster:
    """One cluster's bus: its ID (= JetStream domain), bus directory and nats-server."""

    cluster_id: str
    pki: BusPki
    server: NatsServer

    async def connect(self, identity: str, publish_deadline: float = 5.0, remote: bool = False) -> Bus:
        """A client of this cluster's server with ``identity``'s credentials (``remote``: its
        connection for other clusters' buckets, ``BusOptions.remote``)."""
        return await Bus.connect(
            BusOptions(
                url=self.server.url,
                remote=remote,
                credentials=self.pki.credentials(identity),
                identity=identity,
                name=f"{self.cluster_id}-{identity}",
                publish_deadline=publish_deadline,
            )
        )

    def kill(self) -> None:
        """SIGKILL the nats-server (as a lost cluster); :meth:`restart` brings it back."""
        child = self.server.child
        if child is not None and child.proc is not None and child.running:
            child.signal_group(signal.SIGKILL)
            child.proc.wait(10)
        self.server.stop()

    def restart(self) -> None:
        """Start the server again on the same ports and store (it rejoins its hub)."""
        self.server.start()


def federated_clusters(root: Path, hub: str = "cluster1", *leaves: str) -> list[FederatedCluster]:
    """Start ``hub`` and the ``leaves`` (default: ``cluster2``) under ``root``; stop them with
    :func:`stop_all`."""
    out: list[FederatedCluster] = []
    try:
        for cid in (hub, *(leaves or ("cluster2",))):
            pki = BusPki.create(root / cid / "bus", admin=True)
            server = NatsServer(
                store_dir=root / cid / "nats",
                log_file=root / cid / "nats.log",
                config_file=pki.server_config,
                domain=cid,
            )
            if not out:
                server.leafnode_listen = f"{server.host}:0"
            else:
                hub_server, hub_pki = out[0].server, out[0].pki
                server.leaf_remotes = [
                    LeafRemote.from_dir(hub_server.leafnode_url, hub_pki.root / "federation")
                ]
            out.append(FederatedCluster(cid, pki, server.start()))
    except BaseException:
        stop_all(out)
        raise
    return out


def stop_all(clusters: list[FederatedCluster]) -> None:
    for c in reversed(clusters):
        c.server.stop()
