"""Citadel's settings: command-line flags plus Istio's environment variables, each declared once."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshplane.citadel.durations import parse_duration
from meshplane.shared.lifecycle import parse_hostport
from meshplane.shared.meshconfig import add_mesh_config_flag, mesh_config_from_args

#: env var → (default, description)
ENV: dict[str, tuple[str, str]] = {
    "CITADEL_SELF_SIGNED_CA_CERT_TTL": ("87600h", "lifetime of a self-signed root (10 years)"),
    "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL": ("1h", "root rotation check interval; 0 disables"),
    "CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE": ("20", "rotate when this % of life is left"),
    "CITADEL_ENABLE_JITTER_FOR_ROOT_CERT_ROTATOR": ("true", "random delay before the first check"),
    "CITADEL_CA_KEY_TYPE": ("rsa", "key type of a new self-signed root: rsa (2048) or ec (P-256)"),
    "DEFAULT_WORKLOAD_CERT_TTL": ("24h", "workload cert TTL when the CSR asks for none"),
    "MAX_WORKLOAD_CERT_TTL": ("2160h", "largest workload cert TTL a caller may ask for (90 days)"),
    "TOKEN_AUDIENCES": ("istio-ca", "comma-separated audiences a bearer token must carry"),
    "NATS_URL": ("", "the bus; unset means no trust bundle is published"),
}


@dataclass(frozen=True, slots=True)
class Settings:
    ca_dir: Path
    grpc_addr: tuple[str, int]
    grpc_mtls_addr: tuple[str, int] | None
    monitoring_addr: tuple[str, int]
    nats_url: str
    trust_domain: str
    hostnames: tuple[str, ...]
    ca_key_type: str
    root_ttl: dt.timedelta
    root_check_interval: dt.timedelta
    root_grace_percentile: float
    root_rotator_jitter: bool
    default_ttl: dt.timedelta
    max_ttl: dt.timedelta
    audiences: tuple[str, ...]
    #: issuer → JWKS file or URL
    jwt_issuers: Mapping[str, str]
    local_issuer: bool
    token_review: bool
    kubernetes: bool
    #: where Secret istio-ca-secret lives (Kubernetes mode)
    ca_namespace: str = "meshplane-system"
    #: serving processes on the gRPC ports (the main one included)
    workers: int = 1
    #: CSRs arriving within this of each other are signed together (0: each at once)
    sign_window: dt.timedelta = dt.timedelta(milliseconds=3)
    #: ``--trust-domain`` given: the MeshConfig on the bus does not change it
    trust_domain_pinned: bool = False


def _env(name: str, environ: Mapping[str, str]) -> str:
    return environ.get(name) or ENV[name][0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshplane-citadel", description="meshplane's CA (Citadel)")
    p.add_argument("--ca-dir", required=True, help="CA key material (self-signed, or cacerts files)")
    p.add_argument("--grpc-addr", default="0.0.0.0:8060", help="CreateCertificate over TLS")
    p.add_argument(
        "--grpc-mtls-addr",
        default="0.0.0.0:8061",
        help="CreateCertificate over mutual TLS (renewal with a client cert from this CA); '' disables",
    )
    p.add_argument(
        "--monitoring-addr",
        default="127.0.0.1:15014",
        help="/ready and /metrics (default local-only; 0.0.0.0:15014 lets probes and scrapers in)",
    )
    p.add_argument("--nats-url", default=None, help="the bus (env NATS_URL)")
    p.add_argument(
        "--trust-domain",
        default=None,
        help="default: --mesh-config's trustDomain (else cluster.local), then the bus's MeshConfig's; "
        "given: fixed",
    )
    add_mesh_config_flag(p)
    p.add_argument("--hostname", action="append", default=[], help="extra SAN of the serving cert")
    p.add_argument("--ca-key-type", choices=["rsa", "ec"], default=None, help="env CITADEL_CA_KEY_TYPE")
    p.add_argument(
        "--jwt-issuer",
        action="append",
        default=[],
        metavar="ISSUER=JWKS",
        help="trust bearer JWTs from ISSUER, verified with the JWKS file or https URL",
    )
    p.add_argument("--no-local-issuer", action="store_true", help="do not trust the --ca-dir issuer key")
    p.add_argument(
        "--token-review",
        action="store_true",
        help="authenticate tokens with TokenReview (default on when running in a Kubernetes pod)",
    )
    p.add_argument(
        "--kubernetes",
        action="store_true",
        help="keep the self-signed root in Secret istio-ca-secret and publish istio-ca-root-cert in every "
        "namespace (default on when running in a Kubernetes pod)",
    )
    p.add_argument(
        "--ca-namespace",
        default=None,
        help="namespace of Secret istio-ca-secret, which persists the self-signed root in Kubernetes mode "
        "(env POD_NAMESPACE, else meshplane-system)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving CreateCertificate on the same ports (SO_REUSEPORT), main included",
    )
    p.add_argument(
        "--sign-window",
        default="3ms",
        help="sign the EC-key CSRs that arrive within this duration of each other together "
        "(less CPU per CSR under load, at most this much added latency); 0s signs each at once",
    )
    return p


def parse_settings(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags and env; a bad value exits with a message naming the flag or variable."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    mesh = mesh_config_from_args(parser, args.mesh_config)
    issuers: dict[str, str] = {}
    for item in args.jwt_issuer:
        iss, sep, loc = item.partition("=")
        if not sep or not iss or not loc:
            parser.error(f"--jwt-issuer {item!r}: expected ISSUER=JWKS_FILE_OR_URL")
        issuers[iss] = loc
    try:
        grpc_addr = parse_hostport(args.grpc_addr)
        grpc_mtls_addr = parse_hostport(args.grpc_mtls_addr) if args.grpc_mtls_addr else None
        monitoring_addr = parse_hostport(args.monitoring_addr)
    except ValueError as exc:
        parser.error(str(exc))
    durations: dict[str, dt.timedelta] = {}
    for name in (
        "CITADEL_SELF_SIGNED_CA_CERT_TTL",
        "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL",
        "DEFAULT_WORKLOAD_CERT_TTL",
        "MAX_WORKLOAD_CERT_TTL",
    ):
        try:
            durations[name] = parse_duration(_env(name, environ))
        except ValueError as exc:
            parser.error(f"{name}: {exc}")
    try:
        grace = float(_env("CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE", environ))
    except ValueError:
        parser.error("CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: expected a number")
    if not 0 < grace < 100:
        parser.error("CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: must be between 0 and 100")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: must be at least 1")
    try:
        sign_window = parse_duration(args.sign_window)
    except ValueError as exc:
        parser.error(f"--sign-window: {exc}")
    if sign_window > dt.timedelta(seconds=1):
        parser.error(f"--sign-window {args.sign_window}: at most 1s")
    in_cluster = bool(environ.get("KUBERNETES_SERVICE_HOST"))
    key_type = args.ca_key_type or _env("CITADEL_CA_KEY_TYPE", environ)
    if key_type not in ("rsa", "ec"):
        parser.error(f"CITADEL_CA_KEY_TYPE: expected rsa or ec, got {key_type!r}")
    return Settings(
        ca_dir=Path(args.ca_dir),
        grpc_addr=grpc_addr,
        grpc_mtls_addr=grpc_mtls_addr,
        monitoring_addr=monitoring_addr,
        nats_url=args.nats_url or _env("NATS_URL", environ),
        trust_domain=args.trust_domain or mesh.trust_domain,
        trust_domain_pinned=args.trust_domain is not None,
        hostnames=tuple(args.hostname),
        ca_key_type=key_type,
        root_ttl=durations["CITADEL_SELF_SIGNED_CA_CERT_TTL"],
        root_check_interval=durations["CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL"],
        root_grace_percentile=grace,
        root_rotator_jitter=_env("CITADEL_ENABLE_JITTER_FOR_ROOT_CERT_ROTATOR", environ).lower() == "true",
        default_ttl=durations["DEFAULT_WORKLOAD_CERT_TTL"],
        max_ttl=durations["MAX_WORKLOAD_CERT_TTL"],
        audiences=tuple(a.strip() for a in _env("TOKEN_AUDIENCES", environ).split(",") if a.strip()),
        jwt_issuers=issuers,
        local_issuer=not args.no_local_issuer,
        token_review=args.token_review or in_cluster,
        kubernetes=args.kubernetes or in_cluster,
        ca_namespace=args.ca_namespace or environ.get("POD_NAMESPACE") or "meshplane-system",
        workers=args.workers,
        sign_window=sign_window,
    )
