"""`meshctl proxy-status` and `meshctl version`: what every Pilot replica and component reports on the bus.

proxy-status prints Istio's columns (NAME, CLUSTER, CDS, LDS, EDS, RDS, PILOT, VERSION) with
Istio's sync words: SYNCED when the last nonce sent was acked, NOT SENT when nothing was sent,
``STALE (Never Acknowledged)`` when nothing was ever acked, STALE otherwise; a NACK shows as
``NACKED``. ``-o json`` prints the raw status for scripts.

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

from google.protobuf.json_format import MessageToDict

from meshplane.ctl import __version__
from meshplane.ctl.busclient import add_nats_flag, connect
from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_USAGE, error
from meshplane.ctl.tables import render
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, BusError
from meshplane.shared.components import is_live as component_is_live
from meshplane.shared.proxystatus import is_live

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


def table(statuses: list[status_pb2.ProxyStatus]) -> str:
    rows = []
    for s in sorted(statuses, key=lambda s: (s.proxy_id, s.pilot_id)):
        by_type = {t.type_url: t for t in s.types}
        words = [sync_word(by_type.get(url)) for url in TYPES.values()]
        rows.append([s.proxy_id, "Kubernetes", *words, s.pilot_id, s.proxy_version or "-"])
    return render(["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION"], rows)


async def read_proxy_status(url: str) -> list[status_pb2.ProxyStatus]:
    bus = await connect(url)
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
    add_nats_flag(p)
    p.set_defaults(func=run_proxy_status)
    v = sub.add_parser("version", help="client version and every running component's (via the bus)")
    v.add_argument("--short", action="store_true", help="client version only")
    v.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_nats_flag(v)
    v.set_defaults(func=run_version)


def run_proxy_status(args: argparse.Namespace) -> int:
    try:
        statuses = asyncio.run(read_proxy_status(args.nats_url))
    except (BusError, TimeoutError) as exc:
        error("proxy-status", f"cannot read proxy status from the bus at {args.nats_url}: {exc}")
        return EXIT_USAGE
    chosen = [s for s in statuses if not args.proxy or s.proxy_id == args.proxy]
    if args.proxy and not chosen:
        error("proxy-status", f"proxy {args.proxy!r} is not connected to any Pilot")
        return EXIT_FINDINGS
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
