"""Keys, certificates and kubeconfigs for a loopback Kubernetes control plane (see ``kubeenv``).

One CA signs the API server's serving certificate (SANs 127.0.0.1, localhost and the in-cluster
names) and the admin's client certificate (organisation ``system:masters``); the API server
trusts client certificates from the same CA. A separate EC key signs service-account tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")


@dataclass(frozen=True)
class ClusterCerts:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    unused = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
        **dict.fromkeys(unused, False),
    )


def _leaf_usage(builder: x509.CertificateBuilder, purpose: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )


def write_cluster_certs(directory: Path) -> ClusterCerts:
    """Write a fresh CA, serving and admin certificates and the service-account key under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("meshplane-test-kube-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_NAMES]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    serving = (
        _leaf_usage(_builder(_name("kube-apiserver"), ca_name, serving_key), ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _leaf_usage(
        _builder(_name("meshplane-admin", "system:masters"), ca_name, admin_key),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ).sign(ca_key, hashes.SHA256())

    certs = ClusterCerts(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    for cert, path in ((ca, certs.ca_cert), (serving, certs.serving_cert), (admin, certs.admin_cert)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    sa_key = ec.generate_private_key(ec.SECP256R1())
    for key, path in (
        (ca_key, certs.ca_key),
        (serving_key, certs.serving_key),
        (admin_key, certs.admin_key),
        (sa_key, certs.sa_key),
    ):
        _write_private(path, _key_pem(key))
    public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certs.sa_pub.write_bytes(public)  # the API server verifies tokens with this
    return certs


def write_kubeconfig(path: Path, server: str, ca_cert: Path, user: dict[str, str]) -> None:
    """Write a kubeconfig (JSON, which every client reads as YAML) for one cluster and one user."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "meshplane", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "meshplane", "context": {"cluster": "meshplane", "user": "user"}}],
        "current-context": "meshplane",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, (json.dumps(config, indent=2) + "\n").encode())
