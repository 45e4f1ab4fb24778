"""Test helpers for citadel and the node agent: real subprocesses, CSRs, Envoy bootstraps."""

from meshplane.citadel.testing.envoy import (
    EnvoyProcess,
    client_bootstrap,
    envoy_binary,
    gateway_bootstrap,
    server_bootstrap,
    tls_listener,
    with_sds_token,
    with_sds_token_file,
)
from meshplane.citadel.testing.processes import (
    CitadelProcess,
    NodeAgentProcess,
    ServiceProcess,
    http_get,
    make_csr,
    private_pem,
)

__all__ = [
    "CitadelProcess",
    "EnvoyProcess",
    "NodeAgentProcess",
    "ServiceProcess",
    "client_bootstrap",
    "envoy_binary",
    "gateway_bootstrap",
    "http_get",
    "make_csr",
    "private_pem",
    "server_bootstrap",
    "tls_listener",
    "with_sds_token",
    "with_sds_token_file",
]
