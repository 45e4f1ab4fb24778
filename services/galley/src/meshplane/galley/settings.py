"""Galley's settings: command-line flags and their environment fallbacks, parsed once."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshplane.galley.api.limits import DEFAULT_MAX_BODY, DEFAULT_MAX_CONCURRENT, DEFAULT_READ_TIMEOUT, Limits
from meshplane.shared.durations import parse_duration
from meshplane.shared.inject import InjectorConfig
from meshplane.shared.lifecycle import parse_hostport
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE, add_mesh_config_flag, mesh_config_from_args

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

#: Galley's debug port: Istio's components keep their introspection (ControlZ) on localhost:9876
DEBUG_PORT = 9876


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything galley needs to start; built by :func:`parse_args`."""

    config_dir: Path | None = None
    webhook_addr: tuple[str, int] = ("0.0.0.0", 15017)
    monitoring_addr: tuple[str, int] = ("127.0.0.1", 15014)
    #: ``/debug/sources`` and ``/debug/analyze``: local-only (Istio's ControlZ port, localhost:9876)
    debug_addr: tuple[str, int] = ("127.0.0.1", DEBUG_PORT)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    nats_url: str = "nats://127.0.0.1:4222"
    #: Kubernetes API (Kubernetes source only); empty = in-cluster or kubeconfig.
    kube_api: str = ""
    #: ValidatingWebhookConfiguration galley reconciles (Kubernetes mode with --tls-cert).
    webhook_config_name: str = "meshplane-validator-meshplane-system"
    #: CA published as caBundle (default: the --tls-cert chain's issuers, or the cert if alone).
    webhook_ca_file: Path | None = None
    #: MutatingWebhookConfiguration of the injector whose caBundle galley keeps (Kubernetes mode
    #: with --tls-cert); empty: none
    injector_config_name: str = "meshplane-sidecar-injector"
    #: what ``POST /inject`` gives a pod (Pilot and Citadel addresses, image, CNI validation)
    injector: InjectorConfig = InjectorConfig()
    #: body size, read timeout and concurrency bounds of the webhook port
    webhook_limits: Limits = Limits()
    #: ``--mesh-config``: followed and published on the bus (None: Istio's defaults, nothing published,
    #: unless the ConfigMap below is read)
    mesh_config: Path | None = None
    #: Kubernetes mode without ``--mesh-config``: the ConfigMap (key ``mesh``) of ``namespace`` that
    #: holds the MeshConfig, read through the API ("" = none)
    mesh_configmap: str = "istio"
    #: Galley's own namespace (``--namespace``, env ``POD_NAMESPACE``, else meshplane-system)
    namespace: str = "meshplane-system"
    #: MeshConfig ``rootNamespace`` (``--mesh-config``), for the analyzers
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    #: MeshConfig ``defaultConfig`` (``--mesh-config``): injected pods' default ProxyConfig
    proxy_defaults: dict[str, Any] = field(default_factory=dict)
    #: multi-cluster: the cluster this Galley's registry belongs to (Istio's CLUSTER_ID), set on
    #: every instance it publishes, and the network of instances no label places on one
    cluster_id: str = "Kubernetes"
    network: str = ""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshplane-galley",
        description="meshplane Galley: validating webhook, config sources, registry and analyzers.",
    )
    p.add_argument("--config-dir", type=Path, help="directory of Istio YAML (default: the Kubernetes API)")
    p.add_argument("--webhook-addr", default="0.0.0.0:15017", help="HOST:PORT of the admission webhook")
    p.add_argument(
        "--monitoring-addr",
        default="127.0.0.1:15014",
        help="HOST:PORT of /ready and /metrics (default: %(default)s; 0.0.0.0:15014 lets probes and "
        "scrapers in)",
    )
    p.add_argument(
        "--debug-addr",
        default=f"127.0.0.1:{DEBUG_PORT}",
        help="HOST:PORT of /debug/sources and /debug/analyze (meshctl analyze --galley); keep it "
        "local-only (default: %(default)s)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate for the webhook (reloaded on change)")
    p.add_argument("--tls-key", type=Path, help="PEM private key for the webhook (reloaded on change)")
    p.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="the bus (env NATS_URL; default nats://127.0.0.1:4222)",
    )
    p.add_argument("--kube-api", default="", help="Kubernetes API URL (default: in-cluster or kubeconfig)")
    p.add_argument(
        "--webhook-config-name",
        default="meshplane-validator-meshplane-system",
        help="ValidatingWebhookConfiguration to reconcile in Kubernetes mode (caBundle, failurePolicy)",
    )
    p.add_argument(
        "--webhook-ca-file", type=Path, help="PEM CA published as caBundle (default: from --tls-cert)"
    )
    p.add_argument(
        "--injector-config-name",
        default="meshplane-sidecar-injector",
        help="MutatingWebhookConfiguration whose caBundle to keep in Kubernetes mode ('' for none)",
    )
    defaults = InjectorConfig()
    p.add_argument("--inject-pilot", default=defaults.pilot, help="Pilot's xDS address in injected pods")
    p.add_argument("--inject-ca", default=defaults.ca, help="Citadel's address in injected pods")
    p.add_argument("--inject-image", default=defaults.image, help="the proxy image injected pods run")
    p.add_argument(
        "--inject-cni",
        choices=("true", "false"),
        default="true",
        help="capture by the CNI plugin: add the istio-validation init container (default true)",
    )
    p.add_argument(
        "--webhook-max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        help="largest request body in bytes the webhook reads; larger gets 413 (default 4 MiB: "
        "Kubernetes sends at most about 3 MB)",
    )
    p.add_argument(
        "--webhook-read-timeout",
        default=f"{DEFAULT_READ_TIMEOUT:g}s",
        help="time a request body may take to arrive; slower gets 408 (default 10s)",
    )
    p.add_argument(
        "--webhook-max-concurrent",
        type=int,
        default=DEFAULT_MAX_CONCURRENT,
        help="requests read and reviewed at once; others wait up to the read timeout, then 503 (default 16)",
    )
    p.add_argument(
        "--cluster-id",
        default=os.environ.get("CLUSTER_ID", "") or "Kubernetes",
        help="this cluster's ID (Istio's CLUSTER_ID), set on every workload instance Galley publishes "
        "(env CLUSTER_ID; default: %(default)s)",
    )
    p.add_argument(
        "--network",
        default="",
        help="network of the workloads whose pod, WorkloadEntry and namespace carry no "
        "topology.istio.io/network label (default: none, the same network as everyone)",
    )
    add_mesh_config_flag(p)
    p.add_argument(
        "--mesh-configmap",
        default="istio",
        help="Kubernetes mode without --mesh-config: the ConfigMap of Galley's namespace whose key mesh "
        "is the MeshConfig, read and followed through the API (Istio's name: istio, istio-<rev> for a "
        "revision; '' reads none)",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="Galley's own namespace, where the MeshConfig ConfigMap is (default: env POD_NAMESPACE, "
        "else meshplane-system)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> Settings:
    """Parse flags; exits with a usage message naming the bad flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    mesh = mesh_config_from_args(parser, args.mesh_config)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key must be given together")
    addresses: list[tuple[str, int]] = []
    for flag, value in (
        ("--webhook-addr", args.webhook_addr),
        ("--monitoring-addr", args.monitoring_addr),
        ("--debug-addr", args.debug_addr),
    ):
        try:
            addresses.append(parse_hostport(value))
        except ValueError as exc:
            parser.error(f"{flag}: {exc}")
    webhook, monitoring, debug = addresses
    if args.webhook_max_body < 1:
        parser.error(f"--webhook-max-body {args.webhook_max_body}: must be at least 1")
    if args.webhook_max_concurrent < 1:
        parser.error(f"--webhook-max-concurrent {args.webhook_max_concurrent}: must be at least 1")
    try:
        read_timeout = parse_duration(args.webhook_read_timeout, bare_seconds=True).total_seconds()
    except ValueError:
        parser.error(
            f"--webhook-read-timeout: expected a duration such as 10s, got {args.webhook_read_timeout!r}"
        )
    if read_timeout <= 0:
        parser.error(f"--webhook-read-timeout {args.webhook_read_timeout}: must be positive")
    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or "meshplane-system"
    if not _DNS_LABEL.fullmatch(namespace):
        parser.error(f"--namespace / POD_NAMESPACE {namespace!r}: not a Kubernetes namespace name")
    if args.mesh_configmap and not _DNS_SUBDOMAIN.fullmatch(args.mesh_configmap):
        parser.error(f"--mesh-configmap {args.mesh_configmap!r}: not a ConfigMap name")
    if args.config_dir is not None and not args.config_dir.is_dir():
        parser.error(f"--config-dir {args.config_dir}: not a directory")
    return Settings(
        config_dir=args.config_dir,
        webhook_addr=webhook,
        monitoring_addr=monitoring,
        debug_addr=debug,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        nats_url=args.nats_url,
        kube_api=args.kube_api,
        webhook_config_name=args.webhook_config_name,
        webhook_ca_file=args.webhook_ca_file,
        injector_config_name=args.injector_config_name,
        injector=InjectorConfig(
            pilot=args.inject_pilot, ca=args.inject_ca, image=args.inject_image, cni=args.inject_cni == "true"
        ),
        webhook_limits=Limits(args.webhook_max_body, read_timeout, args.webhook_max_concurrent),
        mesh_config=args.mesh_config,
        mesh_configmap=args.mesh_configmap,
        namespace=namespace,
        root_namespace=mesh.root_namespace,
        proxy_defaults=mesh.default_config,
        cluster_id=args.cluster_id,
        network=args.network,
    )
