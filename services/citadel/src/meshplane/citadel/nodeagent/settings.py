"""Node agent settings: flags plus Istio's ``SECRET_TTL``, each declared once."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshplane.citadel.durations import parse_duration
from meshplane.shared.lifecycle import parse_hostport
from meshplane.shared.meshconfig import add_mesh_config_flag, mesh_config_from_args

#: env var → (default, description)
ENV: dict[str, tuple[str, str]] = {
    "SECRET_TTL": ("24h", "workload certificate lifetime the agent asks for"),
    "NATS_URL": ("", "the bus, for the trust bundle; unset means the CA response's root is used"),
    "CITADEL_ENABLE_WORKLOAD_CERT_ROTATION": (
        "true",
        "false: workload certificates are issued once and never renewed (they expire after SECRET_TTL)",
    ),
}


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

#: where Istio's agents find the mesh root (the ``istio-ca-root-cert`` ConfigMap, mounted)
DEFAULT_CA_ROOT = "/var/run/secrets/istio/root-cert.pem"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    sds_socket: Path
    ca_addr: str
    ca_root: Path
    token_file: Path | None
    nats_url: str
    key_type: str
    cert_ttl: dt.timedelta
    trust_domain: str
    #: /metrics listener; None = off
    monitoring_addr: tuple[str, int] | None = None
    #: where ``file-cert:``/``file-root:`` files may be; None = anywhere (an agent for one workload)
    file_credential_dirs: tuple[Path, ...] | None = None
    #: seconds between re-reads of the file credentials Envoy asked for
    file_credential_poll: float = 5.0
    #: serve ``kubernetes://<name>`` from the Secrets of this namespace (a gateway's agent); None = off
    credential_namespace: str | None = None
    #: ``CITADEL_ENABLE_WORKLOAD_CERT_ROTATION``: renew workload certificates at half life
    rotation: bool = True
    #: ``--trust-domain`` given: the MeshConfig on the bus does not change it
    trust_domain_pinned: bool = False


def parse_agent_settings(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> AgentSettings:
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog="meshplane-node-agent", description="SDS server for Envoy")
    p.add_argument("--sds-socket", required=True, help="Unix socket Envoy's sds-grpc cluster dials")
    p.add_argument("--ca-addr", required=True, help="Citadel's CreateCertificate address, HOST:PORT")
    p.add_argument(
        "--ca-root",
        default=DEFAULT_CA_ROOT,
        help="PEM root to trust for Citadel's TLS (default: Istio's path, where the istio-ca-root-cert "
        "ConfigMap is mounted in Kubernetes)",
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="the workload's bearer token, re-read for every CSR; without it (a per-node agent) each "
        "SDS stream must carry its workload's token as 'authorization: Bearer ...' metadata",
    )
    p.add_argument("--nats-url", default=None, help="the bus (env NATS_URL)")
    p.add_argument(
        "--key-type", choices=["ec", "rsa"], default="ec", help="workload key: EC P-256 or RSA 2048"
    )
    p.add_argument("--cert-ttl", default=None, help="certificate lifetime to ask for (env SECRET_TTL, 24h)")
    p.add_argument(
        "--trust-domain",
        default=None,
        help="the trust bundle to serve (default: --mesh-config's trustDomain, else cluster.local; "
        "with --nats-url the MeshConfig on the bus is followed unless this is given)",
    )
    add_mesh_config_flag(p)
    p.add_argument("--monitoring-addr", default=None, help="HOST:PORT serving /metrics (default: off)")
    p.add_argument(
        "--file-credential-dir",
        action="append",
        default=None,
        help="a directory whose files may be served as file-cert:/file-root: resources (repeatable); "
        "default: any path with --token-file (one workload, as Istio's agent), none per node",
    )
    p.add_argument(
        "--file-credential-poll",
        type=float,
        default=5.0,
        help="seconds between re-reads of the file credentials Envoy asked for (default 5)",
    )
    p.add_argument(
        "--credential-namespace",
        default=None,
        help="serve Gateway credentialName resources (kubernetes://NAME) from the Secrets of this "
        "namespace, read with the agent's own Kubernetes credentials (in-cluster, else KUBECONFIG): "
        "a gateway's agent, with the gateway's ServiceAccount; default: off",
    )
    args = p.parse_args(argv)
    mesh = mesh_config_from_args(p, args.mesh_config)
    if args.file_credential_poll <= 0:
        p.error(f"--file-credential-poll {args.file_credential_poll}: must be positive")
    dirs: tuple[Path, ...] | None = tuple(Path(d) for d in args.file_credential_dir or ())
    if not args.file_credential_dir and args.token_file:
        dirs = None
    ttl_text = args.cert_ttl or environ.get("SECRET_TTL") or ENV["SECRET_TTL"][0]
    try:
        ttl = parse_duration(ttl_text)
    except ValueError as exc:
        p.error(f"--cert-ttl / SECRET_TTL: {exc}")
    if ttl < dt.timedelta(seconds=2):
        p.error(f"--cert-ttl / SECRET_TTL: {ttl_text!r} is too short (minimum 2s)")
    monitoring = None
    if args.monitoring_addr:
        try:
            monitoring = parse_hostport(args.monitoring_addr)
        except ValueError as exc:
            p.error(f"--monitoring-addr: {exc}")
    namespace = args.credential_namespace
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        p.error(f"--credential-namespace {namespace!r}: not a Kubernetes namespace name")
    if ":" not in args.ca_addr:
        p.error(f"--ca-addr {args.ca_addr!r}: expected HOST:PORT")
    rotation = (environ.get("CITADEL_ENABLE_WORKLOAD_CERT_ROTATION") or "true").strip().lower()
    if rotation not in ("true", "false", "1", "0"):
        p.error(f"CITADEL_ENABLE_WORKLOAD_CERT_ROTATION: expected true or false, got {rotation!r}")
    return AgentSettings(
        sds_socket=Path(args.sds_socket),
        ca_addr=args.ca_addr,
        ca_root=Path(args.ca_root),
        token_file=Path(args.token_file) if args.token_file else None,
        nats_url=args.nats_url or environ.get("NATS_URL", ""),
        key_type=args.key_type,
        cert_ttl=ttl,
        trust_domain=args.trust_domain or mesh.trust_domain,
        trust_domain_pinned=args.trust_domain is not None,
        monitoring_addr=monitoring,
        file_credential_dirs=dirs,
        file_credential_poll=args.file_credential_poll,
        credential_namespace=args.credential_namespace or None,
        rotation=rotation in ("true", "1"),
    )
