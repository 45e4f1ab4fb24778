"""`meshctl bootstrap`: write the Envoy bootstrap for a sidecar or router proxy.

``render_bootstrap`` is a pure function returning the bootstrap as a dict; the command writes it
as YAML. The bootstrap names the node (Istio's node ID and metadata), points ADS at every Pilot
given (SotW or Delta), adds ``sds-grpc`` over a Unix socket when given, and the admin address.
With ``--sds-token-path`` the node metadata asks Pilot for SDS configs that carry that token
file to the node agent (``SDS_TOKEN_PATH``, ``SDS_UDS_PATH``), as a per-node agent needs.

xDS is mutual TLS (Istio's 15012 shape): the ``xds-grpc`` cluster presents the workload
certificate (SDS ``default``) and accepts only a Pilot whose certificate chains to the mesh root
(SDS ``ROOTCA``) and carries ``--pilot-san`` (Pilot's SPIFFE ID). ``--xds-plaintext`` drops TLS,
for a Pilot started with ``--xds-plaintext`` (tests and benchmarks).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl import proxysettings
from meshplane.ctl.bootstrapparts import STATS_TAGS, BootstrapError, admin_listeners
from meshplane.ctl.bootstrapparts import socket_address as _socket
from meshplane.ctl.errors import EXIT_USAGE, error
from meshplane.ctl.vm import add_vm_arguments, vm_options, xds_relay_listener
from meshplane.shared.proxyconfig import ProxyConfigError, ProxySettings
from meshplane.shared.version import ISTIO_VERSION, __version__

DOMAIN = "svc.cluster.local"
#: Pilot's identity: the ``pilot`` service account in the control plane's namespace (k8s/), in
#: whatever trust domain the mesh has (``*``): a proxy must keep trusting Pilot across a MeshConfig
#: ``trustDomain`` change, as Istio's proxies do by verifying istiod's DNS name. The certificate
#: must still chain to the mesh root (ROOTCA), whose CA issues only its current trust domain.
PILOT_SAN = "spiffe://*/ns/meshplane-system/sa/pilot"
ANY_TRUST_DOMAIN = "spiffe://*/"
#: Istio's xDS ports: mutual TLS on 15012, plaintext (Pilot's --xds-plaintext) on 15010
XDS_TLS_PILOT = "127.0.0.1:15012"
XDS_PLAINTEXT_PILOT = "127.0.0.1:15010"
SDS_CREDENTIALS = "envoy.grpc_credentials.file_based_metadata"


@dataclass
class BootstrapOptions:
    proxy_type: str = "sidecar"
    node_id: str = ""
    #: plaintext by default here (``pilot_san`` empty), so Istio's plaintext port; the command
    #: line defaults to mutual TLS on 15012
    pilots: list[str] = field(default_factory=lambda: [XDS_PLAINTEXT_PILOT])
    delta: bool = False
    sds_socket: str = ""
    sds_token_path: str = ""
    admin: str = "127.0.0.1:15000"
    namespace: str = "default"
    service_account: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"
    interception: str = "REDIRECT"
    cluster_id: str = "Kubernetes"
    mesh_id: str = "cluster.local"
    #: ``region/zone/subzone`` of the workload (node locality, for locality load balancing).
    locality: str = ""
    #: cap (seconds) of Envoy's backoff when the ADS stream to Pilot must be re-established; 0
    #: keeps Envoy's default (0.5 s doubling to 30 s), which spreads a fleet's reconnects. The
    #: local mesh (six proxies) uses 1 s so a restarted Pilot serves every proxy within a second.
    xds_retry_max: float = 0.0
    #: Istio's health port (15021): a listener answering ``GET /healthz/ready`` with Envoy's own
    #: readiness (admin ``/ready``: 200 once live); the first LDS and CDS fetches then wait for
    #: Pilot without a timeout, so live means configured by Pilot; 0: none
    health_port: int = 0
    #: Istio's stats port (15090): a listener serving Envoy's Prometheus stats at
    #: ``/stats/prometheus`` (the admin's, nothing else of the admin); 0: none
    stats_port: int = 0
    #: Pilot's SPIFFE ID: xDS over mutual TLS with the SDS certificate. Empty: plaintext xDS.
    pilot_san: str = ""
    #: the effective ProxyConfig (mesh form): its stats matcher and ``ISTIO_META_*`` proxyMetadata
    #: go into the bootstrap, the whole into node metadata ``PROXY_CONFIG`` (as Istio's agent)
    proxy_config: dict[str, Any] = field(default_factory=dict)
    #: the control-plane revision that injected the proxy: node metadata ``ISTIO_REVISION``
    revision: str = ""
    #: a VM's node metadata, and its relay socket for ``meshctl workload-probe`` (``ctl.vm``)
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    xds_relay_socket: str = ""


def _hostport(option: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BootstrapError(f"{option}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def default_node_id(opts: BootstrapOptions, name: str) -> str:
    return f"{opts.proxy_type}~{opts.ip}~{name}.{opts.namespace}~{opts.namespace}.{DOMAIN}"


def _ads_source(wait: bool = False) -> dict[str, Any]:
    """``wait``: Istio's ``initial_fetch_timeout: 0s``, Envoy starts serving only with Pilot's config."""
    return {"ads": {}, "resource_api_version": "V3", **({"initial_fetch_timeout": "0s"} if wait else {})}


def _sds_config(opts: BootstrapOptions) -> dict[str, Any]:
    """Where the bootstrap's own secrets come from: ``sds-grpc``, or with a token path, the node
    agent's socket with the workload's token (as Pilot's SDS configs for such a proxy)."""
    if opts.sds_token_path:
        metadata = {
            "@type": "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
            "secret_data": {"filename": opts.sds_token_path},
            "header_key": "authorization",
            "header_prefix": "Bearer ",
        }
        service: dict[str, Any] = {
            "google_grpc": {
                "target_uri": f"unix:{opts.sds_socket}",
                "stat_prefix": "sdsstat",
                "credentials_factory_name": SDS_CREDENTIALS,
                "channel_credentials": {"local_credentials": {}},
                "call_credentials": [{"from_plugin": {"name": SDS_CREDENTIALS, "typed_config": metadata}}],
            }
        }
    else:
        service = {"envoy_grpc": {"cluster_name": "sds-grpc"}}
    api = {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [service],
    }
    return {"resource_api_version": "V3", "api_config_source": api}


def pilot_san_matcher(san: str) -> dict[str, Any]:
    """Envoy's StringMatcher for Pilot's SPIFFE ID: exact, or any trust domain for ``spiffe://*/...``."""
    if not san.startswith(ANY_TRUST_DOMAIN):
        return {"exact": san}
    rest = san.removeprefix(ANY_TRUST_DOMAIN)
    return {"safe_regex": {"regex": "^spiffe://[^/]+/" + re.escape(rest) + "$"}}


def _xds_tls(opts: BootstrapOptions) -> dict[str, Any]:
    """The ``xds-grpc`` transport socket: the workload certificate, and Pilot verified by its SAN."""
    if not opts.sds_socket:
        raise BootstrapError("--sds-socket: required for mutual TLS to Pilot (or --xds-plaintext)")
    if not opts.pilot_san.startswith("spiffe://"):
        raise BootstrapError(f"--pilot-san: expected Pilot's spiffe:// ID, got {opts.pilot_san!r}")
    context = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": _sds_config(opts)}],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": pilot_san_matcher(opts.pilot_san)}
                    ]
                },
                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": _sds_config(opts)},
            },
        },
    }
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The Envoy v3 bootstrap as plain data; raises BootstrapError on a bad option."""
    if opts.proxy_type not in ("sidecar", "router"):
        raise BootstrapError(f"--type: expected sidecar or router, got {opts.proxy_type!r}")
    if not opts.pilots:
        raise BootstrapError("--pilot: at least one HOST:PORT is required")
    node_id = opts.node_id or default_node_id(opts, "proxy")
    parts = node_id.split("~")
    if len(parts) != 4 or parts[0] != opts.proxy_type:
        raise BootstrapError(
            f"--node-id: expected {opts.proxy_type}~IP~POD.NAMESPACE~NAMESPACE.{DOMAIN}, got {node_id!r}"
        )
    pilots = [_hostport("--pilot", p) for p in opts.pilots]
    admin_host, admin_port = _hostport("--admin", opts.admin)
    pod = parts[2].split(".", 1)[0]
    metadata: dict[str, Any] = {
        "NAMESPACE": opts.namespace,
        "LABELS": dict(opts.labels),
        "SERVICE_ACCOUNT": opts.service_account,
        "INSTANCE_IPS": opts.ip,
        "WORKLOAD_NAME": opts.labels.get("app", pod),
        "CLUSTER_ID": opts.cluster_id,
        "MESH_ID": opts.mesh_id,
        "INTERCEPTION_MODE": opts.interception,
        "ISTIO_VERSION": ISTIO_VERSION,
        "MESHPLANE_VERSION": __version__,
        **opts.extra_metadata,
    }
    if opts.revision:
        metadata["ISTIO_REVISION"] = opts.revision
    if opts.proxy_config:
        metadata["PROXY_CONFIG"] = opts.proxy_config
    proxy = ProxySettings.of(opts.proxy_config)
    for key, value in proxy.node_metadata().items():
        metadata.setdefault(key, value)
    if opts.sds_token_path:
        # per-node agent: Pilot's SDS configs send this token file to the agent's socket
        if not opts.sds_token_path.startswith("/"):
            raise BootstrapError(f"--sds-token-path: expected an absolute path, got {opts.sds_token_path!r}")
        metadata["SDS_TOKEN_PATH"] = opts.sds_token_path
        if opts.sds_socket:
            metadata["SDS_UDS_PATH"] = opts.sds_socket
    clusters: list[dict[str, Any]] = [
        {
            "name": "xds-grpc",
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "dns_lookup_family": "V4_ONLY",
            "load_assignment": {
                "cluster_name": "xds-grpc",
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": _socket(h, p)}} for h, p in pilots]}
                ],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {
                        "http2_protocol_options": {
                            "connection_keepalive": {"interval": "30s", "timeout": "10s"}
                        }
                    },
                }
            },
            "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
            **({"transport_socket": _xds_tls(opts)} if opts.pilot_san else {}),
        }
    ]
    if opts.sds_socket:
        clusters.append(
            {
                "name": "sds-grpc",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "sds-grpc",
                    "endpoints": [
                        {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": opts.sds_socket}}}}]}
                    ],
                },
                "typed_extension_protocol_options": clusters[0]["typed_extension_protocol_options"],
            }
        )
    return {
        "node": {
            "id": node_id,
            "cluster": metadata["WORKLOAD_NAME"] + "." + opts.namespace,
            "metadata": metadata,
            **({"locality": _node_locality(opts.locality)} if opts.locality else {}),
        },
        "admin": {"address": _socket(admin_host, admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if opts.delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc", **_xds_retry(opts)}}],
            },
            # separate objects: YAML output would otherwise print an anchor and an alias
            # with a health port, readiness means "has Pilot's config" (as Istio's agent checks)
            "lds_config": _ads_source(wait=bool(opts.health_port)),
            "cds_config": _ads_source(wait=bool(opts.health_port)),
        },
        "static_resources": {
            "clusters": clusters,
            **_listeners(opts, admin_host, admin_port, clusters),
        },
        # Istio's stats tags (Envoy's defaults replaced), plus ProxyConfig's stats matcher
        "stats_config": {
            "use_all_default_tags": False,
            "stats_tags": [{"tag_name": name, "regex": regex} for name, regex in STATS_TAGS],
            **proxy.stats_config(),
        },
        "layered_runtime": {
            "layers": [{"name": "static", "static_layer": {"re2.max_program_size.error_level": 32768}}]
        },
    }


def _listeners(
    opts: BootstrapOptions, host: str, port: int, clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    listeners = admin_listeners(opts.health_port, opts.stats_port, host, port, clusters).get("listeners", [])
    listeners += xds_relay_listener(opts.xds_relay_socket)
    return {"listeners": listeners} if listeners else {}


class _PlainDumper(yaml.SafeDumper):
    """Writes a shared sub-object out in full each time: no ``&id001`` anchors and ``*id001`` aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _xds_retry(opts: BootstrapOptions) -> dict[str, Any]:
    if not opts.xds_retry_max:
        return {}
    cap = opts.xds_retry_max
    backoff = {"base_interval": f"{min(0.25, cap)}s", "max_interval": f"{cap}s"}
    return {"retry_policy": {"retry_back_off": backoff}}


def _node_locality(text: str) -> dict[str, str]:
    parts = text.split("/")
    if len(parts) > 3 or not parts[0] or any(not p or "*" in p for p in parts):
        raise BootstrapError(f"--locality: expected REGION[/ZONE[/SUBZONE]], got {text!r}")
    return dict(zip(("region", "zone", "sub_zone"), parts, strict=False))


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BootstrapError(f"--labels: expected k=v[,k=v], got {item!r}")
        out[key.strip()] = value.strip()
    return out


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bootstrap", help="write an Envoy bootstrap for a sidecar or gateway")
    p.add_argument("--type", dest="proxy_type", default="sidecar", choices=["sidecar", "router"])
    p.add_argument("--node-id", default="", help="TYPE~IP~POD.NS~NS.svc.cluster.local")
    p.add_argument(
        "--pilot",
        action="append",
        default=[],
        help="HOST:PORT of a Pilot (repeatable; else ProxyConfig discoveryAddress, else ISTIOD_ADDR, "
        f"else {XDS_TLS_PILOT}, or {XDS_PLAINTEXT_PILOT} with --xds-plaintext: Istio's ports)",
    )
    p.add_argument("--delta", action="store_true", help="use Delta xDS (default: state of the world)")
    p.add_argument(
        "--pilot-san",
        default=PILOT_SAN,
        help="Pilot's SPIFFE ID, verified on the mutual TLS xDS connection; spiffe://*/... matches any "
        "trust domain (default: %(default)s)",
    )
    p.add_argument(
        "--xds-plaintext",
        action="store_true",
        help="xDS without TLS, to a Pilot run with --xds-plaintext (tests and benchmarks only)",
    )
    p.add_argument("--sds-socket", default="", help="Unix socket of the node agent's SDS server")
    p.add_argument(
        "--sds-token-path",
        default="",
        help="service-account token file Envoy sends on SDS streams (per-node agent, e.g. in Kubernetes)",
    )
    p.add_argument("--admin", default="127.0.0.1:15000", help="Envoy admin HOST:PORT")
    p.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="serve GET /healthz/ready here (Istio's 15021; default none)",
    )
    p.add_argument(
        "--stats-port",
        type=int,
        default=0,
        help="serve Envoy's Prometheus stats at /stats/prometheus here (Istio's 15090; default none)",
    )
    p.add_argument("--namespace", default="default")
    p.add_argument("--service-account", default="default")
    p.add_argument("--labels", default="", help="k=v,k=v")
    p.add_argument("--ip", default="127.0.0.1", help="the workload's IP (INSTANCE_IPS)")
    p.add_argument(
        "--interception",
        default="REDIRECT",
        choices=["REDIRECT", "TPROXY", "NONE"],
        help="NONE: no iptables, listeners bind the workload IP (local mesh)",
    )
    p.add_argument("--locality", default="", help="REGION/ZONE/SUBZONE of the workload")
    p.add_argument(
        "--revision",
        default="",
        help="the control-plane revision of the proxy (node metadata ISTIO_REVISION)",
    )
    proxysettings.add_flags(p)
    add_vm_arguments(p)
    p.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        vm = vm_options(args)
        proxy_config = vm.proxy_config(proxysettings.from_args(args))
        opts = BootstrapOptions(
            proxy_type=args.proxy_type,
            node_id=args.node_id,
            pilots=proxysettings.discovery(args.pilot, proxy_config)
            or [XDS_PLAINTEXT_PILOT if args.xds_plaintext else XDS_TLS_PILOT],
            delta=args.delta,
            pilot_san="" if args.xds_plaintext else args.pilot_san,
            sds_socket=args.sds_socket,
            sds_token_path=args.sds_token_path,
            admin=args.admin,
            health_port=args.health_port,
            stats_port=args.stats_port,
            namespace=args.namespace,
            service_account=args.service_account,
            labels=_labels(args.labels),
            ip=args.ip,
            interception=args.interception,
            locality=args.locality,
            proxy_config=proxy_config,
            revision=args.revision,
            extra_metadata=vm.metadata,
            xds_relay_socket=vm.relay_socket,
        )
        text = yaml.dump(render_bootstrap(opts), Dumper=_PlainDumper, sort_keys=False)
    except (BootstrapError, ProxyConfigError, ValueError) as exc:  # ValueError: a VM flag
        error("bootstrap", str(exc))
        return EXIT_USAGE
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0
