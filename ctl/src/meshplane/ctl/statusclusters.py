"""``meshctl proxy-status --state-dir DIR``: every cluster's proxies of a multi-cluster ``meshctl up``.

Each cluster has its own bus; ``meshctl up`` records where in ``DIR/<cluster>/cluster.json``
(``localmesh.multi``). This reads every cluster's bus with that bus's ``meshctl`` credentials and
prints one table whose CLUSTER column is, as istioctl's, the proxy's cluster: the one whose
``proxies.json`` lists it (a remote cluster's proxies are on their primary's bus), else the
cluster of the bus its Pilot reports to. A cluster whose bus does not answer (lost, or not
started) is named on stderr and left out; the others are still shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_USAGE, error
from meshplane.ctl.status import read_proxy_status, render_cluster_rows, status_rows
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import BusError

CLUSTER_FILE = "cluster.json"


def cluster_buses(state: Path) -> dict[str, tuple[str, Path]]:
    """Cluster ID → (bus URL, bus directory), from ``state/*/cluster.json``."""
    found = {}
    for path in sorted(state.glob(f"*/{CLUSTER_FILE}")):
        try:
            record = json.loads(path.read_text())
            found[str(record["cluster"])] = (str(record["nats_url"]), Path(record["bus_dir"]))
        except (OSError, ValueError, KeyError) as exc:
            error("proxy-status", f"{path}: unreadable ({exc}); that cluster is left out")
    return found


def proxy_clusters(state: Path) -> dict[str, str]:
    """Proxy → the cluster ``meshctl up`` runs it in (``state/<cluster>/proxies.json``), for the
    proxies only one cluster has."""
    seen: dict[str, list[str]] = {}
    for path in sorted(state.glob("*/proxies.json")):
        try:
            names = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name in names:
            seen.setdefault(str(name), []).append(path.parent.name)
    return {proxy: clusters[0] for proxy, clusters in seen.items() if len(clusters) == 1}


async def _read(url: str, bus_dir: Path) -> list[status_pb2.ProxyStatus] | str:
    try:
        return await read_proxy_status(url, bus_dir)
    except (BusError, TimeoutError, OSError) as exc:
        return str(exc) or type(exc).__name__


async def read_clusters(state: Path) -> dict[str, list[status_pb2.ProxyStatus] | str]:
    """Every cluster's live proxy records, or why its bus could not be read."""
    buses = cluster_buses(state)
    answers = await asyncio.gather(*(_read(url, d) for url, d in buses.values()))
    return dict(zip(buses, answers, strict=True))


def run_clusters_status(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if not any(state.glob(f"*/{CLUSTER_FILE}")):
        error(
            "proxy-status",
            f"--state-dir {state}: no <cluster>/{CLUSTER_FILE} (not a multi-cluster meshctl up)",
        )
        return EXIT_USAGE
    by_cluster = asyncio.run(read_clusters(state))
    home = proxy_clusters(state)
    rows, raw = [], []
    for bus_cluster, answer in by_cluster.items():
        if isinstance(answer, str):
            error("proxy-status", f"cluster {bus_cluster}: cannot read its bus: {answer}")
            continue
        chosen = [s for s in answer if not args.proxy or s.proxy_id == args.proxy]
        for status, row in zip(chosen, status_rows(chosen), strict=True):
            cluster = home.get(status.proxy_id, bus_cluster)
            rows.append((cluster, *row))
            raw.append({"cluster": cluster, **MessageToDict(status)})
    if args.proxy and not rows:
        error("proxy-status", f"proxy {args.proxy!r} is not connected to any Pilot of any cluster")
        return EXIT_FINDINGS
    print(json.dumps(raw, indent=2) if args.output == "json" else render_cluster_rows(rows))
    return 0
