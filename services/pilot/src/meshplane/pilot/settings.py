"""Pilot's settings: command-line flags and Istio's tuning environment variables."""

from __future__ import annotations

import argparse
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from meshplane.shared.durations import parse_duration
from meshplane.shared.meshconfig import (
    DEFAULT_ROOT_NAMESPACE,
    MeshConfig,
    add_mesh_config_flag,
    mesh_config_from_args,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _duration(name: str, raw: str) -> float:
    """Parse a Go-style duration (``100ms``, ``10s``, ``1m``) or plain seconds, as seconds."""
    try:
        return parse_duration(raw, bare_seconds=True).total_seconds()
    except ValueError:
        raise ValueError(f"{name}: expected a duration such as 100ms or 10s, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "true" if default else "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    return raw in ("true", "1")


#: Istio's xDS ports: ADS over TLS on 15012; plaintext (``--xds-plaintext``) on 15010
XDS_TLS_PORT = 15012
XDS_PLAINTEXT_PORT = 15010


#: Istio's default CLUSTER_ID
DEFAULT_CLUSTER_ID = "Kubernetes"


@dataclass(frozen=True, slots=True)
class RemoteCluster:
    """A remote cluster whose registry this Pilot merges: its cluster ID and JetStream domain."""

    cluster_id: str
    domain: str

    @staticmethod
    def parse(raw: str) -> RemoteCluster:
        """``ID`` or ``ID=DOMAIN`` (the domain defaults to the cluster ID)."""
        cid, sep, domain = raw.partition("=")
        cid, domain = cid.strip(), domain.strip()
        if not cid or (sep and not domain):
            raise ValueError(f"--remote-cluster {raw!r}: expected ID or ID=DOMAIN")
        for what, value in (("cluster ID", cid), ("domain", domain or cid)):
            if not _DOMAIN.match(value):
                raise ValueError(
                    f"--remote-cluster {raw!r}: {what} {value!r} may hold only letters, digits, '-' and '_'"
                )
        return RemoteCluster(cid, domain or cid)


#: what a JetStream domain (one subject token) may be
_DOMAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def _auto_limit() -> int:
    """Istio 1.21+: min(15 + 5 x cores, 100) when the knob is 0 (automatic)."""
    return min(15 + 5 * (os.cpu_count() or 1), 100)


@dataclass(frozen=True, slots=True)
class Settings:
    grpc_host: str = "0.0.0.0"
    grpc_port: int = XDS_TLS_PORT
    #: monitoring: /ready, /metrics and the read-only /debug/syncz (``meshctl proxy-status``)
    http_host: str = "127.0.0.1"
    http_port: int = 15014
    #: every /debug endpoint: local-only unless asked otherwise (Istio's localhost:8080)
    debug_host: str = "127.0.0.1"
    debug_port: int = 8080
    nats_url: str = "nats://127.0.0.1:4222"
    pilot_id: str = ""
    debounce_after: float = 0.1
    debounce_max: float = 10.0
    jwt_refresh: float = 1200.0
    enable_eds_debounce: bool = True
    push_throttle: int = 100
    max_requests_per_second: float = 100.0
    keepalive_seconds: float = 30.0
    max_connection_age: float = 1800.0
    #: ADS without TLS. The command line never defaults to it (``--xds-plaintext``); in-process
    #: tests construct Settings directly and may.
    xds_plaintext: bool = True
    #: Citadel, its root file and Pilot's token: the source of Pilot's xDS serving certificate
    ca_addr: str = ""
    ca_root: str = "/var/run/secrets/istio/root-cert.pem"  # Istio's paths
    token_file: str = "/var/run/secrets/tokens/istio-token"
    cert_ttl: float = 24 * 3600.0
    #: or the serving certificate from files: chain, key, and the roots client certificates chain to
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    #: MeshConfig ``rootNamespace`` (``--mesh-config``)
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    #: the whole MeshConfig (``--mesh-config``): access logging and the fields above
    mesh: MeshConfig = MeshConfig()
    #: this control plane's revision (``--revision``, env ``REVISION``): config labelled
    #: ``istio.io/rev`` with another value is not read (Istio's LabelsInRevision)
    revision: str = "default"
    #: VM support (Istio's names): WorkloadEntry endpoints and WorkloadGroup auto-registration as a
    #: whole, then auto-registration and health checks each; see ``xds.autoregister``
    enable_workload_entry: bool = True
    enable_autoregistration: bool = True
    enable_health_checks: bool = True
    #: how long an auto-registered WorkloadEntry outlives its proxy's last connection
    workload_entry_grace_period: float = 10.0
    #: multi-cluster: this Pilot's own cluster (Istio's CLUSTER_ID), the remote clusters whose
    #: registries it merges (cluster ID, JetStream domain) and when a silent one goes stale
    cluster_id: str = DEFAULT_CLUSTER_ID
    remote_clusters: tuple[RemoteCluster, ...] = ()
    remote_stale_after: float = 30.0

    @property
    def autoregistration(self) -> bool:
        return self.enable_workload_entry and self.enable_autoregistration

    @property
    def health_checks(self) -> bool:
        return self.enable_workload_entry and self.enable_health_checks

    @staticmethod
    def from_env(env: Mapping[str, str], **overrides: object) -> Settings:
        """Read ``PILOT_*`` variables with Istio's names, defaults and meanings."""
        throttle = int(env.get("PILOT_PUSH_THROTTLE", "0") or 0)
        rps = float(env.get("PILOT_MAX_REQUESTS_PER_SECOND", "0") or 0)
        ambient = env.get("PILOT_ENABLE_AMBIENT", "false").strip().lower()
        if ambient in ("true", "1"):
            raise ValueError(
                "PILOT_ENABLE_AMBIENT=true: meshplane has no ambient mode (ztunnel, waypoints); "
                "unset it or set it to false to run Pilot with sidecars"
            )
        if ambient not in ("false", "0", ""):
            raise ValueError(f"PILOT_ENABLE_AMBIENT: expected true or false, got {ambient!r}")
        values: dict[str, object] = {
            "debounce_after": _duration("PILOT_DEBOUNCE_AFTER", env.get("PILOT_DEBOUNCE_AFTER", "100ms")),
            "debounce_max": _duration("PILOT_DEBOUNCE_MAX", env.get("PILOT_DEBOUNCE_MAX", "10s")),
            "jwt_refresh": _duration(
                "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", env.get("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", "20m")
            ),
            "enable_eds_debounce": _flag(env, "PILOT_ENABLE_EDS_DEBOUNCE", True),
            "enable_workload_entry": _flag(env, "PILOT_ENABLE_WORKLOAD_ENTRY", True),
            "enable_autoregistration": _flag(env, "PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION", True),
            "enable_health_checks": _flag(env, "PILOT_ENABLE_WORKLOAD_ENTRY_HEALTHCHECKS", True),
            "workload_entry_grace_period": _duration(
                "PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", env.get("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", "10s")
            ),
            "push_throttle": throttle if throttle > 0 else _auto_limit(),
            "max_requests_per_second": rps if rps > 0 else float(_auto_limit()),
            "pilot_id": env.get("POD_NAME", "") or f"pilot-{uuid.uuid4().hex[:8]}",
        }
        if "NATS_URL" in env:
            values["nats_url"] = env["NATS_URL"]
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


def parse_args(argv: list[str] | None, env: Mapping[str, str]) -> Settings:
    """Parse ``meshplane-pilot`` flags; an unknown flag is a usage error (exit 2), as for every service."""
    from meshplane.shared.lifecycle import parse_hostport

    parser = argparse.ArgumentParser(prog="meshplane-pilot", description="meshplane Pilot: the xDS server")
    parser.add_argument(
        "--grpc-addr",
        default="",
        help=f"ADS gRPC listen address (default: 0.0.0.0:{XDS_TLS_PORT}, mutual TLS as Istio's "
        f"15012; with --xds-plaintext 0.0.0.0:{XDS_PLAINTEXT_PORT}, Istio's plaintext port)",
    )
    parser.add_argument(
        "--http-addr",
        default="127.0.0.1:15014",
        help="monitoring HTTP: /ready, /metrics and the read-only /debug/syncz that meshctl "
        "proxy-status reads (default: %(default)s; 0.0.0.0:15014 lets probes and scrapers in)",
    )
    parser.add_argument(
        "--debug-addr",
        default="127.0.0.1:8080",
        help="HTTP of every /debug endpoint (config_dump, configz, registryz, ...); keep it "
        "local-only, as Istio keeps its debug port on localhost:8080 (default: %(default)s)",
    )
    parser.add_argument("--nats-url", default=env.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--id", default="", help="replica id (default: POD_NAME or random)")
    parser.add_argument(
        "--ca-addr",
        default="",
        help="Citadel's CreateCertificate HOST:PORT: Pilot's xDS serving certificate comes from there "
        "(ADS over mutual TLS)",
    )
    parser.add_argument(
        "--ca-root",
        default="/var/run/secrets/istio/root-cert.pem",
        help="PEM root of Citadel's TLS and of the mesh (default: %(default)s)",
    )
    parser.add_argument(
        "--token-file",
        default="/var/run/secrets/tokens/istio-token",
        help="Pilot's bearer token for Citadel, re-read at each renewal (default: %(default)s)",
    )
    parser.add_argument("--tls-cert", default="", help="or: Pilot's xDS serving chain from this PEM file")
    parser.add_argument("--tls-key", default="", help="the private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca", default="", help="with --tls-cert: PEM roots a proxy's certificate must chain to"
    )
    parser.add_argument(
        "--xds-plaintext",
        action="store_true",
        help="serve ADS without TLS or client authentication (tests and benchmarks only: anyone who "
        "reaches the port can read any proxy's config)",
    )
    parser.add_argument(
        "--revision",
        default=env.get("REVISION", "") or "default",
        help="this Pilot's control-plane revision: config labelled istio.io/rev=<other> is ignored, "
        "unlabelled config is read by every revision (env REVISION; default: default)",
    )
    parser.add_argument(
        "--cluster-id",
        default=env.get("CLUSTER_ID", "") or DEFAULT_CLUSTER_ID,
        help="this Pilot's own cluster (Istio's CLUSTER_ID; env CLUSTER_ID; default: %(default)s)",
    )
    parser.add_argument(
        "--remote-cluster",
        action="append",
        default=[],
        metavar="ID[=DOMAIN]",
        help="a remote cluster whose registry (services, workloads) is merged into this Pilot's, read "
        "over its JetStream domain (default: the ID); repeatable. Config is never read from it",
    )
    parser.add_argument(
        "--remote-stale-after",
        default="30s",
        help="a remote cluster whose Galley has written nothing for this long is stale: its endpoints "
        "leave EDS until it is heard from again (default: %(default)s)",
    )
    add_mesh_config_flag(parser)
    args = parser.parse_args(argv)
    if not _DNS_LABEL.match(args.revision):
        parser.error(f"--revision {args.revision!r}: not a DNS label (lower case letters, digits and '-')")
    mesh = mesh_config_from_args(parser, args.mesh_config)
    chosen = [
        flag
        for flag in ("--xds-plaintext", "--ca-addr", "--tls-cert")
        if getattr(args, flag[2:].replace("-", "_"))
    ]
    if len(chosen) > 1:
        parser.error(f"{' and '.join(chosen)}: give one, not several")
    if not chosen:
        parser.error(
            "ADS is served over mutual TLS: give --ca-addr (a certificate from Citadel, with --ca-root "
            "and --token-file) or --tls-cert/--tls-key/--tls-client-ca, or --xds-plaintext for tests "
            "and benchmarks"
        )
    if args.tls_cert and not (args.tls_key and args.tls_client_ca):
        parser.error("--tls-cert needs --tls-key and --tls-client-ca")
    default_port = XDS_PLAINTEXT_PORT if args.xds_plaintext else XDS_TLS_PORT
    addresses: dict[str, tuple[str, int]] = {}
    for flag, value in (
        ("--grpc-addr", args.grpc_addr or f"0.0.0.0:{default_port}"),
        ("--http-addr", args.http_addr),
        ("--debug-addr", args.debug_addr),
    ):
        try:
            addresses[flag] = parse_hostport(value)
        except ValueError as exc:
            parser.error(f"{flag}: {exc}")
    (grpc_host, grpc_port), (http_host, http_port), (debug_host, debug_port) = addresses.values()
    overrides: dict[str, object] = {
        "grpc_host": grpc_host,
        "grpc_port": grpc_port,
        "http_host": http_host,
        "http_port": http_port,
        "debug_host": debug_host,
        "debug_port": debug_port,
        "nats_url": args.nats_url,
        "xds_plaintext": args.xds_plaintext,
        "ca_addr": args.ca_addr,
        "ca_root": args.ca_root,
        "token_file": args.token_file,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
        "root_namespace": mesh.root_namespace,
        "mesh": mesh,
        "revision": args.revision,
    }
    try:
        remotes = tuple(RemoteCluster.parse(r) for r in args.remote_cluster)
        stale_after = _duration("--remote-stale-after", args.remote_stale_after)
    except ValueError as exc:
        parser.error(str(exc))
    if stale_after <= 0:
        parser.error(f"--remote-stale-after {args.remote_stale_after!r}: must be positive")
    seen = [args.cluster_id]
    for r in remotes:
        if r.cluster_id in seen:
            parser.error(f"--remote-cluster {r.cluster_id}: named twice, or this Pilot's own --cluster-id")
        seen.append(r.cluster_id)
    overrides |= {
        "cluster_id": args.cluster_id,
        "remote_clusters": remotes,
        "remote_stale_after": stale_after,
    }
    if args.id:
        overrides["pilot_id"] = args.id
    try:
        return Settings.from_env(env, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
