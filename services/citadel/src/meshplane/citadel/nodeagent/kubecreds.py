"""Gateway credentials from Kubernetes Secrets: the ``kubernetes://<name>`` SDS resources.

Pilot names a Gateway server's ``credentialName`` as ``kubernetes://<name>`` (the certificate)
and ``kubernetes://<name>-cacert`` (the CA that verifies clients, MUTUAL). A gateway's own agent
(``--credential-namespace``, Istio's pre-istiod gateway SDS agent) serves them from the Secrets of
that one namespace, read with the agent's own Kubernetes credentials (the gateway's
ServiceAccount). Keys never reach the bus or Pilot. The Secret shapes, as Istio reads them:

- ``kubernetes.io/tls``: ``tls.crt`` + ``tls.key`` (and ``ca.crt`` for the CA);
- generic (Opaque): ``cert`` + ``key`` (and ``cacert`` for the CA);
- the CA may instead be in a Secret of its own named ``<name>-cacert`` (key ``cacert`` or
  ``ca.crt``); it wins over the CA keys of ``<name>``.

Each Secret asked for is watched by itself (the shared :class:`~meshplane.shared.reflector.Reflector`
on the namespace's Secrets with field selector ``metadata.name=<name>``), never the namespace's
other Secrets. A Secret that is missing, lacks the keys or holds unparsable PEM is not answered,
so Envoy keeps that listener warming instead of rejecting the update; when it appears or changes,
the streams that asked are pushed the new version (a rotation: Envoy uses the new certificate for
new handshakes and keeps open connections). Names with a ``/`` (another namespace) are never
served. Watches last until :meth:`KubeSecrets.close`; at most ``MAX_SECRETS``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from meshplane.shared.reflector import ApiClientLike, Reflector, ResourceDef, Sink, WatchEvent
from meshplane.shared.tasks import TaskSupervisor

log = logging.getLogger(__name__)

PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"
#: (certificate, key) pairs, as ``kubernetes.io/tls`` and generic Secrets name them
CERT_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))
CA_KEYS = ("cacert", "ca.crt")
#: a watch request ends after this and is re-opened from the last resourceVersion
WATCH_SECONDS = 30
MAX_SECRETS = 256
SECRETS = ResourceDef("", "v1", "Secret", "secrets")

#: a Kubernetes object name (DNS subdomain): nothing else reaches a field selector
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")

#: a Secret's decoded data; None: there is no such Secret
SecretData = dict[str, bytes] | None


def decode(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` (base64 values, the API's JSON), decoded; undecodable values are left out."""
    out: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        with contextlib.suppress(binascii.Error, TypeError, ValueError):
            out[key] = base64.b64decode(value, validate=True)
    return out


def _pem_problem(cert: bytes, key: bytes | None) -> str | None:
    try:
        x509.load_pem_x509_certificates(cert)
        if key is not None:
            serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def certificate(data: Mapping[str, bytes]) -> tuple[bytes, bytes] | None:
    """(chain, key) from a Secret's data, or None when it has neither key pair."""
    for cert_key, key_key in CERT_KEYS:
        if data.get(cert_key) and data.get(key_key):
            return data[cert_key], data[key_key]
    return None


def ca_bundle(data: Mapping[str, bytes]) -> bytes | None:
    return next((data[k] for k in CA_KEYS if data.get(k)), None)


def _version(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def resource(
    ref: str, secrets: Mapping[str, SecretData], problem: Callable[[str, str], None]
) -> tuple[secret_pb2.Secret, str] | None:
    """The SDS resource ``kubernetes://<ref>`` from the Secrets known so far, or None.

    ``problem(secret name, message)`` is told why a present Secret cannot be served."""
    name = PREFIX + ref
    if ref.endswith(CACERT_SUFFIX):
        # Secret <name>-cacert first, then the CA keys of Secret <name>
        source, ca = ref, ca_bundle(secrets.get(ref) or {})
        if ca is None:
            source = ref.removesuffix(CACERT_SUFFIX)
            ca = ca_bundle(secrets.get(source) or {})
        if ca is None:
            return None
        bad = _pem_problem(ca, None)
        if bad is not None:
            problem(source, f"its CA certificate is not PEM: {bad}")
            return None
        secret = secret_pb2.Secret(name=name)
        secret.validation_context.CopyFrom(
            common_pb2.CertificateValidationContext(trusted_ca=base_pb2.DataSource(inline_bytes=ca))
        )
        return secret, _version(ca)
    data = secrets.get(ref)
    if data is None:
        return None
    pair = certificate(data)
    if pair is None:
        problem(ref, "it has neither tls.crt/tls.key nor cert/key")
        return None
    bad = _pem_problem(*pair)
    if bad is not None:
        problem(ref, f"its certificate or key is not PEM: {bad}")
        return None
    secret = secret_pb2.Secret(name=name)
    secret.tls_certificate.CopyFrom(
        common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=pair[0]),
            private_key=base_pb2.DataSource(inline_bytes=pair[1]),
        )
    )
    return secret, _version(*pair)


class KubeSecrets:
    """The ``kubernetes://`` credential source of one namespace (see the module docstring)."""

    def __init__(self, api: ApiClientLike | None, namespace: str, supervisor: TaskSupervisor) -> None:
        self._api = api
        self.namespace = namespace
        self._supervisor = supervisor
        self._secrets: dict[str, SecretData] = {}  # only those whose first list is done
        self._watched: set[str] = set()
        self._generation = 0
        self._changed = asyncio.Event()
        self._warned: set[str] = set()
        self._closed = asyncio.Event()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def watched(self) -> frozenset[str]:
        """The names of the Secrets watched so far."""
        return frozenset(self._watched)

    def handles(self, name: str) -> bool:
        return name.startswith(PREFIX)

    async def wait_changed(self, seen: int) -> int:
        while self._generation == seen:
            await self._changed.wait()
        return self._generation

    def get(self, name: str) -> tuple[secret_pb2.Secret, str] | None:
        """The resource and its version, or None (not there yet): its Secrets are watched from now on."""
        ref = name.removeprefix(PREFIX)
        if "/" in ref:
            self._warn(name, f"not serving {name}: a gateway reads only Secrets of {self.namespace}")
            return None
        if len(ref) > 253 or not _SECRET_NAME.fullmatch(ref):
            self._warn(name, f"not serving {name}: {ref!r} is not a Kubernetes Secret name")
            return None
        needed = [ref] + ([ref.removesuffix(CACERT_SUFFIX)] if ref.endswith(CACERT_SUFFIX) else [])
        for secret_name in needed:
            self._watch(secret_name)
        return resource(ref, self._secrets, self._problem)

    def close(self) -> None:
        """End the watches (their open streams are closed at once)."""
        self._closed.set()

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _problem(self, secret_name: str, message: str) -> None:
        where = f"{self.namespace}/{secret_name}"
        self._warn(f"{secret_name}:{message}", f"not serving Secret {where}: {message}")

    def _watch(self, secret_name: str) -> None:
        if secret_name in self._watched:
            return
        if len(self._watched) >= MAX_SECRETS:
            self._warn(secret_name, f"not watching Secret {secret_name}: {MAX_SECRETS} watched already")
            return
        if self._api is None:
            raise RuntimeError("KubeSecrets without an API client cannot watch Secrets")
        self._watched.add(secret_name)
        reflector = Reflector(
            self._api,
            SECRETS,
            self._sink(secret_name),
            namespace=self.namespace,
            field_selector=f"metadata.name={secret_name}",
            watch_timeout=WATCH_SECONDS,
        )
        self._supervisor.spawn(f"secret-{secret_name}", lambda: reflector.run(self._closed))

    def _sink(self, secret_name: str) -> Sink:
        """The Secret's reflector sink: publish its state after each change and each (re)list."""

        async def sink(changes: Sequence[WatchEvent], listed: bool) -> None:
            data = self._secrets.get(secret_name)
            for change in changes:
                data = None if change.type == "DELETED" else decode(change.obj)
            if changes or listed:  # a list that found nothing still says "listed: absent"
                self._publish(secret_name, data)

        return sink

    def _publish(self, secret_name: str, data: SecretData) -> None:
        """The Secret's state now; wake the streams if it changed."""
        if secret_name in self._secrets and self._secrets[secret_name] == data:
            return
        self._secrets[secret_name] = data
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        state = "absent" if data is None else f"keys {sorted(data)}"
        log.info("Secret %s/%s: %s", self.namespace, secret_name, state)
