"""Ask a node agent's SDS socket for a secret, as an Envoy that just connected would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc


def sds_secret(socket: Path, name: str, token: str | None = None) -> secret_pb2.Secret:
    """The first response for ``name`` on a fresh SDS stream (as an Envoy that just connected);
    ``token``: the workload's, on the stream (as to a per-node agent)."""
    done = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield discovery_pb2.DiscoveryRequest(resource_names=[name])
        done.wait(30)

    with grpc.insecure_channel(f"unix:{socket}") as channel:
        metadata = [("authorization", f"Bearer {token}")] if token else None
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        stream = stub.StreamSecrets(requests(), timeout=20, metadata=metadata)
        try:
            response = next(stream)
        finally:
            done.set()
            stream.cancel()
    secret = secret_pb2.Secret()
    if len(response.resources) != 1:
        raise RuntimeError(f"SDS answered {len(response.resources)} resources for {name!r}")
    response.resources[0].Unpack(secret)
    return secret


def root_served(socket: Path) -> str:
    return str(sds_secret(socket, "ROOTCA").validation_context.trusted_ca.inline_bytes.decode())
