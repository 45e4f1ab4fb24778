"""A control-plane component's own certificate from Citadel (Istio's ``CreateCertificate`` API).

Pilot serves xDS over mutual TLS with a certificate for its own SPIFFE identity, which Citadel
derives from the component's token (as for any workload). :class:`CitadelClient` makes an EC
P-256 key here, sends a CSR with ``authorization: Bearer <token>`` over TLS verified by the mesh
root file, and returns a :class:`Credential`. The token file is re-read for every request (a
projected token is refreshed by the kubelet). :func:`renew_after` says when to ask again: at half
the certificate's lifetime, as Istio's agents do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc

REQUEST_TIMEOUT = 10.0


class CitadelError(Exception):
    """No certificate: Citadel unreachable or refusing, or a local file unreadable (named)."""


@dataclass(frozen=True, slots=True)
class Credential:
    key_pem: bytes
    #: leaf first, then any intermediates (without the root)
    chain_pem: bytes
    #: the roots a peer's certificate must chain to (the mesh root, and the root file's)
    roots_pem: bytes
    spiffe_id: str
    not_before: dt.datetime
    not_after: dt.datetime


def spiffe_ids(cert: x509.Certificate) -> list[str]:
    """The ``spiffe://`` URI SANs of ``cert``."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]


def renew_after(cred: Credential, now: dt.datetime) -> float:
    """Seconds from ``now`` until the credential is half-way through its lifetime."""
    half = cred.not_before + (cred.not_after - cred.not_before) / 2
    return max(0.0, (half - now).total_seconds())


def credential_from_files(cert: Path, key: Path, roots: Path) -> Credential:
    """A credential kept in files (a mounted Secret): PEM chain (leaf first), key, and roots."""
    chain, key_pem, roots_pem = (
        _read(p, flag) for p, flag in ((cert, "--tls-cert"), (key, "--tls-key"), (roots, "--tls-client-ca"))
    )
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
        serialization.load_pem_private_key(key_pem, password=None)
        x509.load_pem_x509_certificates(roots_pem)
    except ValueError as exc:
        raise CitadelError(f"{cert}, {key}, {roots}: not PEM certificates and key: {exc}") from None
    return Credential(
        key_pem=key_pem,
        chain_pem=chain,
        roots_pem=roots_pem,
        spiffe_id=next(iter(spiffe_ids(leaf)), ""),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def _key_and_csr() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CitadelError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None


class CitadelClient:
    def __init__(self, ca_addr: str, ca_root: Path, token_file: Path, ttl: dt.timedelta) -> None:
        self.ca_addr = ca_addr
        self.ca_root = ca_root
        self.token_file = token_file
        self.ttl = ttl

    async def issue(self) -> Credential:
        """A new key and certificate; raises :class:`CitadelError` naming what failed."""
        root_file = _read(self.ca_root, "--ca-root")
        token = _read(self.token_file, "--token-file").decode().strip()
        key_pem, csr = await asyncio.to_thread(_key_and_csr)
        request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=int(self.ttl.total_seconds()))
        channel = grpc.aio.secure_channel(
            self.ca_addr, grpc.ssl_channel_credentials(root_certificates=root_file)
        )
        try:
            response = await ca_pb2_grpc.IstioCertificateServiceStub(channel).CreateCertificate(
                request, metadata=[("authorization", f"Bearer {token}")], timeout=REQUEST_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            raise CitadelError(
                f"CreateCertificate at {self.ca_addr}: {exc.code().name}: {exc.details()}"
            ) from None
        finally:
            await channel.close()
        chain = [c.strip() + "\n" for c in response.cert_chain]
        if len(chain) < 2:
            raise CitadelError(
                f"CreateCertificate at {self.ca_addr}: expected [leaf, ..., root], got {len(chain)}"
            )
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        ids = spiffe_ids(leaf)
        if not ids:
            raise CitadelError(f"CreateCertificate at {self.ca_addr}: the certificate has no SPIFFE ID")
        roots = chain[-1].encode()
        if root_file.strip() not in roots:
            roots += b"\n" + root_file.strip() + b"\n"
        return Credential(
            key_pem=key_pem,
            chain_pem="".join(chain[:-1]).encode(),
            roots_pem=roots,
            spiffe_id=ids[0],
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )
