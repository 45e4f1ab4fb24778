"""``meshctl proxy-status --state-dir DIR``: every cluster's proxies of a multi-cluster ``meshctl up``.

Each cluster has its own bus; ``meshctl up`` records where in ``DIR/<cluster>/cluster.json``
(``localmesh.multi``). This reads every cluster's bus with that bus's ``meshctl`` credentials and
prints one table whose CLUSTER column is the bus's cluster ID (istioctl shows the proxy's
cluster there). A cluster whose bus does not answer (lost, or not started) is named on stderr
and left out; the others are still shown.
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
    rows, raw = [], []
    for cluster, answer in by_cluster.items():
        if isinstance(answer, str):
            error("proxy-status", f"cluster {cluster}: cannot read its bus: {answer}")
            continue
        chosen = [s for s in answer if not args.proxy or s.proxy_id == args.proxy]
        rows += [(cluster, *r) for r in status_rows(chosen)]
        raw += [{"cluster": cluster, **MessageToDict(s)} for s in chosen]
    if args.proxy and not rows:
        error("proxy-status", f"proxy {args.proxy!r} is not connected to any Pilot of any cluster")
        return EXIT_FINDINGS
    print(json.dumps(raw, indent=2) if args.output == "json" else render_cluster_rows(rows))
    return 0
