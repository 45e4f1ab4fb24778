"""The CA's key and certificates (the key-cert bundle): load from a ``cacerts``-style directory,
or create a self-signed root there on first start.

One layout serves both modes. A self-signed CA is simply a directory whose ``ca-cert.pem`` is
its own root: ``ca-key.pem`` (mode 0600), ``ca-cert.pem``, ``root-cert.pem``, optional
``cert-chain.pem``; a plugged-in CA brings the same files (or the ``kubernetes.io/tls`` layout
``tls.key`` / ``tls.crt`` / ``ca.crt``). ``previous-roots.pem`` holds roots that were rotated out
and are still valid, so the trust bundle carries old and new roots while both live.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshplane.citadel.ca.errors import CAMaterialError

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CA_KEY = "ca-key.pem"
CA_CERT = "ca-cert.pem"
CERT_CHAIN = "cert-chain.pem"
ROOT_CERT = "root-cert.pem"
PREVIOUS_ROOTS = "previous-roots.pem"
TLS_KEY, TLS_CERT, TLS_CA = "tls.key", "tls.crt", "ca.crt"


@dataclass(frozen=True, slots=True)
class KeyCertBundle:
    """Immutable CA material. ``roots[0]`` is the current root; later entries are older live roots."""

    key: SigningKey
    cert: x509.Certificate
    #: Intermediates between ``cert`` and the root (neither included).
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    #: PEM forms, encoded once (they go into every response)
    _roots_pem: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _chain_pem: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: the Authority Key Identifier every certificate it signs carries
    authority_key_id: x509.AuthorityKeyIdentifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ski = x509.SubjectKeyIdentifier.from_public_key(self.cert.public_key())
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        object.__setattr__(self, "authority_key_id", aki)
        object.__setattr__(self, "_roots_pem", tuple(to_pem(c) for c in self.roots))
        chain = () if self.cert == self.roots[0] else (self.cert, *self.intermediates)
        object.__setattr__(self, "_chain_pem", tuple(to_pem(c) for c in chain))

    @property
    def root(self) -> x509.Certificate:
        return self.roots[0]

    @property
    def self_signed(self) -> bool:
        return self.cert == self.root

    def roots_pem(self) -> list[str]:
        return list(self._roots_pem)

    @property
    def root_pem(self) -> str:
        return self._roots_pem[0]

    def chain_pem(self) -> list[str]:
        """Signing cert and intermediates up to, not including, the root (empty if self-signed)."""
        return list(self._chain_pem)

    def fingerprint(self) -> str:
        """Changes whenever the key, the signing cert or the set of roots changes."""
        h = hashlib.sha256(self.cert.fingerprint(hashes.SHA256()))
        for root in self.roots:
            h.update(root.fingerprint(hashes.SHA256()))
        return h.hexdigest()[:16]


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_key(key_type: str, rsa_bits: int = 2048) -> SigningKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"key type must be 'ec' or 'rsa', got {key_type!r}")


def key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a private key file created with mode 0600 (never world-readable, not even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


def make_root(
    key: SigningKey, org: str, ttl: dt.timedelta, now: dt.datetime | None = None
) -> x509.Certificate:
    """A self-signed CA certificate with Subject O = ``org`` (the trust domain)."""
    now = now or dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - min(dt.timedelta(minutes=1), ttl / 10))  # clock skew margin
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def has_material(ca_dir: Path) -> bool:
    return (ca_dir / CA_KEY).exists() or (ca_dir / TLS_KEY).exists()


def create_self_signed(ca_dir: Path, trust_domain: str, key_type: str, ttl: dt.timedelta) -> None:
    """Create a self-signed root in ``ca_dir`` (key 0600, ``ca-cert.pem`` = ``root-cert.pem``)."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    key = new_key(key_type)
    root = make_root(key, trust_domain, ttl)
    write_private(ca_dir / CA_KEY, key_pem(key))
    write_public(ca_dir / CA_CERT, to_pem(root))
    write_public(ca_dir / ROOT_CERT, to_pem(root))


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as exc:
        raise CAMaterialError(f"{path}: not a PEM certificate file ({exc})") from exc


def _read_key(path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CAMaterialError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAMaterialError(f"{path}: only EC and RSA CA keys are supported")
    return key


def load_bundle(ca_dir: Path, now: dt.datetime | None = None) -> KeyCertBundle:
    """Load CA material from ``ca_dir``; raise :class:`CAMaterialError` naming the bad file."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        if (ca_dir / CA_KEY).exists():
            key = _read_key(ca_dir / CA_KEY)
            cert = _read_certs(ca_dir / CA_CERT)[0]
            root_file = ca_dir / ROOT_CERT
            chain_file = ca_dir / CERT_CHAIN
        elif (ca_dir / TLS_KEY).exists():
            key = _read_key(ca_dir / TLS_KEY)
            tls_certs = _read_certs(ca_dir / TLS_CERT)
            cert = tls_certs[0]
            root_file = ca_dir / TLS_CA
            chain_file = ca_dir / TLS_CERT
        else:
            raise CAMaterialError(f"{ca_dir}: no {CA_KEY} or {TLS_KEY}")
        roots = _read_certs(root_file) if root_file.exists() else [cert]
    except FileNotFoundError as exc:
        raise CAMaterialError(f"missing CA file {exc.filename}") from exc
    chain = _read_certs(chain_file) if chain_file.exists() else []
    intermediates = tuple(c for c in chain if c != cert and c not in roots)
    if (ca_dir / PREVIOUS_ROOTS).exists():
        roots += [r for r in _read_certs(ca_dir / PREVIOUS_ROOTS) if r not in roots]
    live = tuple(r for r in roots if r.not_valid_after_utc > now) or tuple(roots[:1])
    if cert.public_key() != key.public_key():
        raise CAMaterialError(f"{ca_dir}: CA key does not match the CA certificate")
    return KeyCertBundle(key=key, cert=cert, intermediates=intermediates, roots=live)
