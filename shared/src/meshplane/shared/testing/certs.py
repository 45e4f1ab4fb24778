"""Certificates for TLS tests, made with ``cryptography``: self-signed (usable as a CA) and CA-signed."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_self_signed(
    directory: Path, common_name: str, dns_names: tuple[str, ...] = ("localhost",)
) -> tuple[Path, Path]:
    """Write ``tls.crt`` / ``tls.key`` (0600) for 127.0.0.1 and ``dns_names``; return their paths.

    The certificate is a CA too, so it can sign leaves with :func:`write_signed`.
    """
    return _write(directory, common_name, dns_names, None)


def write_signed(
    directory: Path,
    issuer: tuple[Path, Path],
    common_name: str,
    dns_names: tuple[str, ...] = ("localhost",),
) -> tuple[Path, Path]:
    """Write ``tls.crt`` / ``tls.key`` (0600) of a leaf signed by ``issuer`` (its cert and key paths)."""
    return _write(directory, common_name, dns_names, issuer)


def _write(
    directory: Path, common_name: str, dns_names: tuple[str, ...], issuer: tuple[Path, Path] | None
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signing_key: ec.EllipticCurvePrivateKey = key
    issuer_name = name
    if issuer is not None:
        issuer_cert = x509.load_pem_x509_certificate(issuer[0].read_bytes())
        loaded = serialization.load_pem_private_key(issuer[1].read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TypeError(f"issuer key {issuer[1]} is not an EC key")
        signing_key, issuer_name = loaded, issuer_cert.subject
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(n) for n in dns_names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    key_tmp = directory / ".tls.key.tmp"
    fd = os.open(key_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_tmp = directory / ".tls.crt.tmp"
    cert_tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(key_tmp, key_path)
    os.replace(cert_tmp, cert_path)
    return cert_path, key_path
