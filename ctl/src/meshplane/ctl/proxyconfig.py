"""`meshctl proxy-config cluster|listener|route|endpoint|secret|all <proxy>`: what an Envoy really holds.

Like istioctl, it reads Envoy's own admin interface (``/config_dump``, ``/clusters``), not what
Pilot believes it sent. ``<proxy>`` is an admin address (``127.0.0.1:15000``) or a proxy name that
``meshctl up`` recorded in ``<state-dir>/proxies.json``. Tables for people (``-o short``, the
default), the raw config for scripts (``-o json``).
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_USAGE, error
from meshplane.ctl.tables import render

Obj = dict[str, Any]
SECTIONS = ("cluster", "listener", "route", "endpoint", "secret")
_DUMP_TYPES = {
    "cluster": "ClustersConfigDump",
    "listener": "ListenersConfigDump",
    "route": "RoutesConfigDump",
    "secret": "SecretsConfigDump",
}


class ProxyConfigError(Exception):
    """The proxy cannot be found (exit 1) or its admin cannot be read (exit 2)."""

    def __init__(self, message: str, code: int = EXIT_FINDINGS) -> None:
        super().__init__(message)
        self.code = code


def resolve_admin(proxy: str, state_dir: Path) -> str:
    """Admin base URL for a proxy name or ``HOST:PORT``."""
    host, sep, port = proxy.rpartition(":")
    if sep and port.isdigit() and host:
        return f"http://{proxy}"
    index = state_dir / "proxies.json"
    try:
        known: dict[str, str] = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise ProxyConfigError(
            f"unknown proxy {proxy!r}: give its admin HOST:PORT or run `meshctl up` ({index}: {exc})"
        ) from exc
    if proxy not in known:
        raise ProxyConfigError(f"unknown proxy {proxy!r}; known: {', '.join(sorted(known)) or 'none'}")
    return f"http://{known[proxy]}"


def fetch(admin: str, path: str) -> Obj:
    try:
        with urllib.request.urlopen(admin + path, timeout=5) as resp:
            data: Obj = json.loads(resp.read())
            return data
    except (urllib.error.URLError, OSError, ValueError) as exc:
        message = f"cannot read {path} from Envoy admin at {admin}: {exc}"
        raise ProxyConfigError(message, EXIT_USAGE) from exc


def section(dump: Obj, name: str) -> Obj:
    want = _DUMP_TYPES[name]
    for cfg in dump.get("configs", []):
        if str(cfg.get("@type", "")).rsplit(".", 1)[-1] == want:  # not ScopedRoutesConfigDump
            return dict(cfg)
    return {}


def _istio_config(meta: Obj | None) -> str:
    cfg = ((meta or {}).get("filter_metadata") or {}).get("istio", {}).get("config", "")
    parts = str(cfg).strip("/").split("/")
    return f"{parts[-1]}.{parts[-3]}" if len(parts) >= 6 else "-"


def cluster_rows(cfg: Obj) -> list[list[str]]:
    clusters = [c for c in cfg.get("static_clusters", [])] + list(cfg.get("dynamic_active_clusters", []))
    rows = []
    for entry in clusters:
        c = entry.get("cluster", {})
        name = str(c.get("name", ""))
        parts = name.split("|")
        if len(parts) == 4:
            direction, port, subset, fqdn = parts
        else:
            direction, port, subset, fqdn = "-", "-", "-", name
        ctype = c.get("type") or ("EDS" if "eds_cluster_config" in c else "STATIC")
        if "cluster_type" in c:
            ctype = str(c["cluster_type"].get("name", "CUSTOM"))
        rows.append([fqdn, port, subset or "-", direction, str(ctype), _istio_config(c.get("metadata"))])
    return sorted(rows)


def _chain_summary(chain: Obj) -> tuple[str, str]:
    match = chain.get("filter_chain_match", {})
    bits = []
    if "destination_port" in match:
        bits.append(f"port={match['destination_port']}")
    if match.get("server_names"):
        bits.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        bits.append(f"Trans: {match['transport_protocol']}")
    if match.get("application_protocols"):
        bits.append("App: " + ",".join(match["application_protocols"]))
    dest = "-"
    for f in chain.get("filters", []):
        typed = f.get("typed_config", {})
        if "rds" in typed:
            dest = f"Route: {typed['rds'].get('route_config_name', '')}"
        elif "route_config" in typed:
            dest = f"Inline Route: {typed['route_config'].get('name', '')}"
        elif "cluster" in typed:
            dest = f"Cluster: {typed['cluster']}"
        elif "weighted_clusters" in typed:
            dest = "Clusters: " + ",".join(w["name"] for w in typed["weighted_clusters"].get("clusters", []))
    return "; ".join(bits) or "ALL", dest


def listener_rows(cfg: Obj) -> list[list[str]]:
    listeners = [s.get("listener", {}) for s in cfg.get("static_listeners", [])]
    listeners += [d.get("active_state", {}).get("listener", {}) for d in cfg.get("dynamic_listeners", [])]
    rows = []
    for lis in listeners:
        sock = lis.get("address", {}).get("socket_address", {})
        addr, port = str(sock.get("address", "")), str(sock.get("port_value", ""))
        chains = list(lis.get("filter_chains", []))
        if "default_filter_chain" in lis:
            chains.append(lis["default_filter_chain"])
        for chain in chains or [{}]:
            match, dest = _chain_summary(chain)
            rows.append([addr, port, match, dest])
    return rows


def route_rows(cfg: Obj) -> list[list[str]]:
    configs = [s.get("route_config", {}) for s in cfg.get("static_route_configs", [])]
    configs += [d.get("route_config", {}) for d in cfg.get("dynamic_route_configs", [])]
    rows = []
    for rc in configs:
        for vh in rc.get("virtual_hosts", []):
            domains = vh.get("domains", [])
            shown = ", ".join(domains[:2]) + (f" + {len(domains) - 2} more..." if len(domains) > 2 else "")
            for r in vh.get("routes", []):
                m = r.get("match", {})
                if "path" in m:
                    what = m["path"]
                elif "safe_regex" in m:
                    what = m["safe_regex"].get("regex", "")
                else:
                    what = m.get("prefix", "/") + ("*" if m.get("prefix", "/") == "/" else "")
                rows.append(
                    [
                        str(rc.get("name", "")),
                        str(vh.get("name", "")),
                        shown,
                        what,
                        _istio_config(r.get("metadata")),
                    ]
                )
    return rows


def endpoint_rows(clusters: Obj) -> list[list[str]]:
    rows = []
    for cs in clusters.get("cluster_statuses", []):
        for host in cs.get("host_statuses", []):
            sock = host.get("address", {}).get("socket_address", {})
            health = host.get("health_status", {})
            status = health.get("eds_health_status", "HEALTHY")
            outlier = "FAILED" if health.get("failed_outlier_check") else "OK"
            rows.append(
                [
                    f"{sock.get('address', '')}:{sock.get('port_value', '')}",
                    status,
                    outlier,
                    cs.get("name", ""),
                ]
            )
    return sorted(rows, key=lambda r: (r[3], r[0]))


def secret_rows(cfg: Obj) -> list[list[str]]:
    rows = []
    secrets = [
        (s.get("name", ""), s.get("secret", {}), "ACTIVE") for s in cfg.get("dynamic_active_secrets", [])
    ]
    secrets += [
        (s.get("name", ""), s.get("secret", {}), "WARMING") for s in cfg.get("dynamic_warming_secrets", [])
    ]
    secrets += [(s.get("name", ""), s.get("secret", {}), "STATIC") for s in cfg.get("static_secrets", [])]
    for name, secret, status in secrets:
        if "tls_certificate" in secret:
            kind, pem = "Cert Chain", secret["tls_certificate"].get("certificate_chain", {})
        else:
            kind, pem = "CA", secret.get("validation_context", {}).get("trusted_ca", {})
        serial, after, before, valid = "-", "-", "-", "false"
        raw = base64.b64decode(pem["inline_bytes"]) if "inline_bytes" in pem else None
        if raw is None and "filename" in pem:
            try:
                raw = Path(pem["filename"]).read_bytes()
            except OSError:
                raw = None
        if raw:
            try:
                cert = x509.load_pem_x509_certificates(raw)[0]
                serial = f"{cert.serial_number:x}"
                after = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
                before = cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
                valid = "true"
            except ValueError:
                valid = "false"
        rows.append([name, kind, status, valid, serial, after, before])
    return rows


HEADERS = {
    "cluster": ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"],
    "listener": ["ADDRESSES", "PORT", "MATCH", "DESTINATION"],
    "route": ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
    "endpoint": ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
    "secret": ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"],
}
ROWS: dict[str, Callable[[Obj], list[list[str]]]] = {
    "cluster": cluster_rows,
    "listener": listener_rows,
    "route": route_rows,
    "endpoint": endpoint_rows,
    "secret": secret_rows,
}


def filter_rows(kind: str, rows: list[list[str]], args: argparse.Namespace) -> list[list[str]]:
    def keep(r: list[str]) -> bool:
        if kind == "cluster":
            return (
                (not args.fqdn or args.fqdn in r[0])
                and (not args.port or r[1] == str(args.port))
                and (not args.subset or r[2] == args.subset)
                and (not args.direction or r[3] == args.direction)
            )
        if kind == "listener":
            return (not args.address or r[0] == args.address) and (not args.port or r[1] == str(args.port))
        if kind in ("route", "secret"):
            return not args.name or r[0] == args.name
        if kind == "endpoint":
            return not args.cluster or r[3] == args.cluster
        return True

    return [r for r in rows if keep(r)]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "proxy-config", aliases=["pc"], help="show an Envoy's clusters, listeners, routes, ..."
    )
    p.add_argument("section", choices=[*SECTIONS, "all"])
    p.add_argument("proxy", help="proxy name (from meshctl up) or Envoy admin HOST:PORT")
    p.add_argument("-o", "--output", choices=["short", "json"], default="short")
    p.add_argument("--state-dir", default=".state", help="where meshctl up recorded the proxies")
    p.add_argument("--fqdn")
    p.add_argument("--port", type=int)
    p.add_argument("--subset")
    p.add_argument("--direction", choices=["inbound", "outbound"])
    p.add_argument("--address")
    p.add_argument("--name")
    p.add_argument("--cluster")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        admin = resolve_admin(args.proxy, Path(args.state_dir))
        kinds = list(SECTIONS) if args.section == "all" else [args.section]
        dump = fetch(admin, "/config_dump") if any(k != "endpoint" for k in kinds) else {}
        clusters = fetch(admin, "/clusters?format=json") if "endpoint" in kinds else {}
    except ProxyConfigError as exc:
        error("proxy-config", str(exc))
        return exc.code
    if args.output == "json":
        out = {k: clusters if k == "endpoint" else section(dump, k) for k in kinds}
        print(json.dumps(out if len(kinds) > 1 else out[kinds[0]], indent=2))
        return 0
    blocks = []
    for kind in kinds:
        source = clusters if kind == "endpoint" else section(dump, kind)
        rows = filter_rows(kind, ROWS[kind](source), args)
        blocks.append(render(HEADERS[kind], rows))
    print("\n\n".join(blocks))
    return 0
