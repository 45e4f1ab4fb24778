"""Citadel's own TLS: a serving certificate from its own CA, re-issued when the CA changes.

Served through gRPC's dynamic server credentials, so new connections pick up a new serving
cert (and new client-cert roots) without restarting the server. gRPC Python can either ignore
client certificates or require them, nothing in between; so the token port does not ask for
one and a second port (``--grpc-mtls-addr``) requires a client certificate chaining to this
CA's roots (renewal), which :class:`ClientCertAuthenticator` then checks again.
"""

from __future__ import annotations

import datetime as dt
import threading

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from meshplane.citadel.ca.keycert import KeyCertBundle, key_pem, to_pem
from meshplane.citadel.ca.signer import sign_leaf

SERVING_TTL = dt.timedelta(days=30)


def serving_pair(bundle: KeyCertBundle, hostnames: tuple[str, ...]) -> tuple[bytes, bytes]:
    """(key PEM, chain PEM) with SANs istio-ca, localhost, 127.0.0.1 and the ``--hostname``s."""
    key = ec.generate_private_key(ec.SECP256R1())
    dns = ["istio-ca", "istio-citadel", "localhost", *hostnames]
    ips = ["127.0.0.1", "::1"]
    ips += [h for h in hostnames if h.replace(".", "").isdigit()]
    dns = [d for d in dns if d not in ips]
    leaf = sign_leaf(bundle, key.public_key(), [], SERVING_TTL, dns_names=dns, ips=ips)
    chain = to_pem(leaf) + "".join(bundle.chain_pem())
    return key_pem(key), chain.encode()


class ServingCredentials:
    """Thread-safe holder; gRPC's fetcher runs on its own thread at each handshake."""

    def __init__(self, bundle: KeyCertBundle, hostnames: tuple[str, ...]) -> None:
        self._hostnames = hostnames
        self.issued = dt.datetime.now(dt.UTC)
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._pending_mtls: grpc.ServerCertificateConfiguration | None = None
        self._current = self._config(bundle)

    def _config(self, bundle: KeyCertBundle) -> grpc.ServerCertificateConfiguration:
        key, chain = serving_pair(bundle, self._hostnames)
        roots = "".join(bundle.roots_pem()).encode()
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def update(self, bundle: KeyCertBundle) -> None:
        self.issued = dt.datetime.now(dt.UTC)
        config = self._config(bundle)
        with self._lock:
            self._pending = self._pending_mtls = config

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def _fetch_mtls(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending_mtls = self._pending_mtls, None
        return pending

    def due(self, now: dt.datetime) -> bool:
        """True once half of the serving certificate's lifetime has passed."""
        return now - self.issued >= SERVING_TTL / 2

    def credentials(self, require_client_cert: bool = False) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._current,
            self._fetch if not require_client_cert else self._fetch_mtls,
            require_client_authentication=require_client_cert,
        )
