"""One cluster of a multi-cluster local mesh (``localmesh.clusters``): LocalMesh with its identity.

Each cluster gets ``<state>/<cluster>/`` for its bus, certificates and tokens, and its processes
are named ``<cluster>/<component>`` (logs in ``<logs>/<cluster>/``). What differs from one mesh:

* the bus: its own nats-server with JetStream domain = the cluster ID; the first cluster's (the
  hub) listens for leafnodes, every other cluster's joins it with the hub's ``federation``
  credentials (``meshctl create-remote-secret``'s files, ``<state>/<cluster>/remote-secret/``);
* Citadel plugged in with the cluster's intermediate of one shared root (``meshctl cacerts``'s
  layout, root in ``<state>/cacerts/``), so one trust spans the clusters;
* Galley with ``--cluster-id`` and ``--network``; Pilot (primaries only) with ``--cluster-id``
  and a ``--remote-cluster`` per other cluster, whose registry it merges;
* every proxy's node metadata ``CLUSTER_ID`` and ``NETWORK``; a remote cluster's proxies connect
  to their primary's Pilot (its address from ``<state>/<primary>/cluster.json``) unless their
  ProxyConfig ``discoveryAddress`` says otherwise;
* an east-west gateway when the cluster's config has a Gateway selecting ``istio: eastwestgateway``.

``<state>/<cluster>/cluster.json`` records the cluster's bus URL, bus directory, Pilot address and
leafnode URL, for the clusters started later (possibly by another ``meshctl up --cluster``) and
for ``meshctl proxy-status --state-dir``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meshplane.ctl import cacerts
from meshplane.ctl.bootstrap import BootstrapOptions
from meshplane.ctl.localmesh.clusters import Clusters, ClusterSpec
from meshplane.ctl.localmesh.mesh import EASTWEST, GATEWAY, LocalMesh
from meshplane.ctl.localmesh.plan import Workload
from meshplane.ctl.localmesh.supervisor import StartError
from meshplane.ctl.remotesecret import write_remote_secret
from meshplane.shared.bus.pki import BusPki, LeafRemote
from meshplane.shared.natsserver import NatsServer
from meshplane.shared.proxyconfig import ProxySettings

CLUSTER_FILE = "cluster.json"


def cluster_record(state: Path, cluster: str) -> dict[str, Any]:
    """What ``<state>/<cluster>/cluster.json`` says (raises StartError when the cluster never ran)."""
    path = state / cluster / CLUSTER_FILE
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StartError(f"cluster {cluster} is not running here ({path}: {exc}); start it first") from None
    return record


@dataclass
class ClusterMesh(LocalMesh):
    spec: ClusterSpec | None = None
    clusters: Clusters | None = None
    leafnode_url: str = ""
    server: NatsServer | None = None

    @property
    def cluster(self) -> ClusterSpec:
        assert self.spec is not None
        return self.spec

    @property
    def root(self) -> Path:
        """The state directory of the whole mesh (this cluster's is ``root/<cluster>``)."""
        return self.state.parent

    def _name(self, name: str) -> str:
        return f"{self.cluster.name}/{name}"

    @property
    def ca_dir(self) -> Path:
        out = self.root / "cacerts" / self.cluster.name
        if not out.exists():
            key, cert = cacerts.load_or_make_root(self.root / "cacerts")
            cacerts.make_cluster(
                self.root / "cacerts", self.cluster.name, key, cert, cacerts.INTERMEDIATE_DAYS
            )
        return out

    def _bus_pki(self) -> BusPki:
        """Each cluster's own bus trust (never ``$MESHPLANE_BUS_DIR``'s: one per cluster)."""
        return BusPki.create(self.state / "bus")

    def _nats(self, log: Path) -> NatsServer:
        assert self.bus is not None and self.clusters is not None
        remotes = []
        if not self.cluster.hub:
            hub = self.clusters.hub.name
            secret = self.state / "remote-secret"
            url = cluster_record(self.root, hub)["leafnode_url"]
            write_remote_secret(self.root / hub / "bus", url, secret)
            remotes.append(LeafRemote.from_dir(url, secret))
        self.server = NatsServer(
            store_dir=self.state / "nats",
            log_file=log,
            die_with_parent=True,
            config_file=self.bus.server_config,
            domain=self.cluster.name,
            leafnode_listen=self._hub_listen() if self.cluster.hub else "",
            leaf_remotes=remotes,
        )
        return self.server

    def _hub_listen(self) -> str:
        """The hub's leafnode address: the one of its last run when free (the leaves of a hub
        restarted by another ``meshctl up`` keep dialling it), else a free port."""
        try:
            last = str(cluster_record(self.root, self.cluster.name)["leafnode_url"]).removeprefix(
                "nats-leaf://"
            )
            host, _, port = last.rpartition(":")
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nats-server binds
                probe.bind((host, int(port)))
            return last
        except (StartError, KeyError, ValueError, OSError):
            return "127.0.0.1:0"

    def start_bus(self) -> None:
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.sup.logs / self.cluster.name).mkdir(exist_ok=True)
        super().start_bus()
        if self.cluster.hub and self.server is not None:
            self.leafnode_url = self.server.leafnode_url
        self.write_record()

    def _flags(self, component: str) -> list[str]:
        assert self.clusters is not None
        c = self.cluster
        if component == "galley":
            return ["--cluster-id", c.name, *(["--network", c.network] if c.network else [])]
        if component == "pilot":
            flags = ["--cluster-id", c.name]
            for other in self.clusters.names:
                if other != c.name:
                    flags += ["--remote-cluster", other]
            return flags
        return []

    @property
    def runs_pilot(self) -> bool:
        return self.cluster.primary

    def start_control_plane(self) -> None:
        if not self.cluster.primary:
            self.pilot_addr = str(cluster_record(self.root, self.cluster.remote_pilot)["pilot"])
        super().start_control_plane()
        self.write_record()

    def gateways(self) -> list[tuple[Workload, str]]:
        found = []
        if self.plan.gateway_port:
            gw = replace(GATEWAY, address=self.plan.gateway_bind)
            found.append((gw, f"{self.plan.gateway_bind}:{self.plan.gateway_port}"))
        if self.plan.eastwest_port:
            labels = {**EASTWEST.labels, "topology.istio.io/network": self.cluster.network}
            # named after its cluster: one Pilot may serve both clusters' (primary-remote)
            name = f"{EASTWEST.name}-{self.cluster.name}"
            ew = replace(EASTWEST, name=name, address=self.plan.eastwest_bind, labels=labels)
            found.append((ew, f"{self.plan.eastwest_bind}:{self.plan.eastwest_port}"))
        return found

    def _bootstrap(self, opts: BootstrapOptions) -> BootstrapOptions:
        assert self.clusters is not None
        extra = {**opts.extra_metadata, "NETWORK": self.cluster.network} if self.cluster.network else {}
        pilots = opts.pilots
        discovery = ProxySettings.of(opts.proxy_config).discovery_address
        if discovery:  # ProxyConfig discoveryAddress (Istio's remote clusters set it to the primary's)
            pilots = [discovery]
        return replace(
            opts,
            cluster_id=self.cluster.name,
            mesh_id=self.clusters.mesh_id,
            extra_metadata=extra or opts.extra_metadata,
            pilots=pilots,
        )

    def write_record(self) -> None:
        assert self.bus is not None
        record = {
            "cluster": self.cluster.name,
            "network": self.cluster.network,
            "profile": self.cluster.profile,
            "nats_url": self.nats_url,
            "bus_dir": str(self.bus.root),
            "pilot": self.pilot_addr,
            "leafnode_url": self.leafnode_url,
        }
        (self.state / CLUSTER_FILE).write_text(json.dumps(record, indent=2) + "\n")
