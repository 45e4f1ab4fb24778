"""`meshctl proxy-status` and `meshctl version`: what every Pilot replica and component reports on the bus.

proxy-status prints Istio's columns (NAME, CLUSTER, CDS, LDS, EDS, RDS, PILOT, VERSION) with
Istio's sync words: SYNCED when the last nonce sent was acked, NOT SENT when nothing was sent,
``STALE (Never Acknowledged)`` when nothing was ever acked, STALE otherwise; a NACK shows as
``NACKED``. ``-o json`` prints the raw status for scripts.

Where it reads: the bus (``--nats-url`` or ``$NATS_URL``), or, as istioctl does, a live cluster
through the API server (``--kubeconfig``/``--context``; ``meshplane.ctl.statuslive``). With
neither given, a kubeconfig that exists (``$KUBECONFIG``, else ``~/.kube/config``) means the
cluster, and otherwise the bus at its default address.

Only records their Pilot still refreshes are shown: a record older than
``meshplane.shared.proxystatus.STALE_AFTER_SECONDS`` (30 s) belongs to a Pilot that died without
cleaning up, and its proxy has reconnected elsewhere or is gone. Likewise ``version`` lists only
components still refreshing their record (``meshplane.shared.components.STALE_AFTER_SECONDS``,
30 s): a component killed without withdrawing its record vanishes within that time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from meshplane.ctl import __version__
from meshplane.ctl.busclient import DEFAULT_NATS_URL, add_nats_flag, connect
from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_USAGE, error
from meshplane.ctl.tables import render
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, BusError
from meshplane.shared.components import is_live as component_is_live
from meshplane.shared.proxystatus import is_live

#: where k8s/ deploys Pilot (istioctl's -i names istiod's namespace the same way)
CONTROL_PLANE_NAMESPACE = "meshplane-system"

TYPES = {
    "CDS": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "LDS": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "EDS": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "RDS": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
}


def sync_word(t: status_pb2.TypeSyncStatus | None) -> str:
    """Istio's word for one type's state."""
    if t is None or not t.nonce_sent:
        return "NOT SENT"
    if t.last_nack:
        return "NACKED"
    if t.nonce_sent == t.nonce_acked:
        return "SYNCED"
    if not t.nonce_acked:
        return "STALE (Never Acknowledged)"
    return "STALE"


Row = tuple[str, str, tuple[str, ...], str]


def render_rows(rows: list[Row], cluster: str = "Kubernetes") -> str:
    """istioctl's table of (proxy, pilot, the four sync words, proxy version) rows of one cluster."""
    return render_cluster_rows([(cluster, *r) for r in rows])


def render_cluster_rows(rows: list[tuple[str, str, str, tuple[str, ...], str]]) -> str:
    """The table of (cluster, proxy, pilot, sync words, version) rows, by cluster then proxy."""
    lines = [
        [proxy, cluster, *words, pilot, ver or "-"] for cluster, proxy, pilot, words, ver in sorted(rows)
    ]
    return render(["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION"], lines)


def status_rows(statuses: list[status_pb2.ProxyStatus]) -> list[Row]:
    rows = []
    for s in statuses:
        by_type = {t.type_url: t for t in s.types}
        words = tuple(sync_word(by_type.get(url)) for url in TYPES.values())
        rows.append((s.proxy_id, s.pilot_id, words, s.proxy_version))
    return rows


def table(statuses: list[status_pb2.ProxyStatus]) -> str:
    return render_rows(status_rows(statuses))


async def read_proxy_status(url: str, bus_dir: Path | None = None) -> list[status_pb2.ProxyStatus]:
    """The live proxy records on the bus at ``url`` (with the ``meshctl`` credentials of ``bus_dir``)."""
    bus = await connect(url, bus_dir)
    try:
        records = await asyncio.wait_for(Buckets(bus).proxy_status.items(), 10)
    finally:
        await bus.close()
    return [s for s in records.values() if is_live(s)]


async def read_components(url: str) -> list[status_pb2.ComponentInfo]:
    bus = await connect(url)
    try:
        records = await asyncio.wait_for(Buckets(bus).components.items(), 10)
    finally:
        await bus.close()
    return [i for i in records.values() if component_is_live(i)]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("proxy-status", aliases=["ps"], help="sync state of every proxy on every Pilot")
    p.add_argument("proxy", nargs="?", help="only this proxy (<pod>.<namespace>)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_nats_flag(p, explicit=True)
    p.add_argument(
        "--state-dir",
        type=Path,
        help="a multi-cluster meshctl up's state dir: every cluster's bus, CLUSTER column = cluster ID",
    )
    p.add_argument("--kubeconfig", help="read every Pilot pod's sync state through this cluster's API server")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "-i",
        "--istioNamespace",
        default=CONTROL_PLANE_NAMESPACE,
        help=f"namespace of the Pilot pods (default {CONTROL_PLANE_NAMESPACE})",
    )
    p.set_defaults(func=run_proxy_status)
    v = sub.add_parser("version", help="client version and every running component's (via the bus)")
    v.add_argument("--short", action="store_true", help="client version only")
    v.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_nats_flag(v)
    v.set_defaults(func=run_version)


def _kubeconfig_exists() -> bool:
    paths = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(p).is_file() for p in paths.split(os.pathsep) if p)


def use_cluster(args: argparse.Namespace) -> bool:
    """Whether to read a live cluster rather than the bus (see the module's docstring)."""
    if args.kubeconfig or args.context:
        return True
    if args.nats_url or os.environ.get("NATS_URL"):
        return False
    return _kubeconfig_exists()


def _not_connected(proxy: str) -> int:
    error("proxy-status", f"proxy {proxy!r} is not connected to any Pilot")
    return EXIT_FINDINGS


def run_cluster_status(args: argparse.Namespace) -> int:
    from meshplane.ctl.analyzelive import LiveError  # the cluster path only: keeps `version` light
    from meshplane.ctl.statuslive import read_cluster_status

    try:
        # $KUBECONFIG as it is now (the kubernetes client reads it once, at import)
        kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or None
        rows = read_cluster_status(kubeconfig, args.context, args.istioNamespace)
    except LiveError as exc:
        error("proxy-status", str(exc))
        return EXIT_USAGE
    chosen = [r for r in rows if not args.proxy or r.proxy_id == args.proxy]
    if args.proxy and not chosen:
        return _not_connected(args.proxy)
    if args.output == "json":
        print(json.dumps([{"pilot": r.pilot, **r.raw} for r in chosen], indent=2))
    else:
        print(render_rows([(r.proxy_id, r.pilot, r.words, r.version) for r in chosen]))
    return 0


def run_proxy_status(args: argparse.Namespace) -> int:
    if args.state_dir is not None:
        from meshplane.ctl.statusclusters import run_clusters_status

        return run_clusters_status(args)
    if use_cluster(args):
        return run_cluster_status(args)
    url = args.nats_url or os.environ.get("NATS_URL") or DEFAULT_NATS_URL
    try:
        statuses = asyncio.run(read_proxy_status(url))
    except (BusError, TimeoutError) as exc:
        error("proxy-status", f"cannot read proxy status from the bus at {url}: {exc}")
        return EXIT_USAGE
    chosen = [s for s in statuses if not args.proxy or s.proxy_id == args.proxy]
    if args.proxy and not chosen:
        return _not_connected(args.proxy)
    if args.output == "json":
        print(json.dumps([MessageToDict(s) for s in chosen], indent=2))
    else:
        print(table(chosen))
    return 0


def run_version(args: argparse.Namespace) -> int:
    if args.short:
        print(__version__)
        return 0
    try:
        infos = asyncio.run(read_components(args.nats_url))
    except (BusError, TimeoutError) as exc:
        infos = []
        error("version", f"no running components found: the bus at {args.nats_url} is unreachable ({exc})")
    if args.output == "json":
        print(json.dumps({"client": __version__, "components": [MessageToDict(i) for i in infos]}, indent=2))
        return 0
    print(f"client version: {__version__}")
    for info in sorted(infos, key=lambda i: (i.component, i.instance)):
        print(f"{info.component} version: {info.version} ({info.instance})")
    return 0
