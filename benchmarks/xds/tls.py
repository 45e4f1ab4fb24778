"""Certificates for the xDS benchmark with mutual TLS on (``run.py --tls``).

Pilot takes its serving certificate from files (``--tls-cert/--tls-key/--tls-client-ca``); the
load generators present one client certificate for the ``bench`` namespace. Pilot's certificate
carries its SPIFFE ID, as Citadel issues it, and also a DNS name: gRPC's Python client verifies
a server by DNS name only (never by URI SAN), so the load generators name it with
``grpc.ssl_target_name_override``. Envoy verifies Pilot by the SPIFFE ID (``meshctl bootstrap``).
The TLS work Pilot does (handshakes, encrypting every push) is the same either way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PILOT_NAME = "pilot.bench"
PILOT_ID = "spiffe://cluster.local/ns/meshplane-system/sa/pilot"


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "root.pem"

    def cert(self, who: str) -> Path:
        return self.directory / f"{who}.pem"

    def key(self, who: str) -> Path:
        return self.directory / f"{who}-key.pem"

    def pilot_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert("pilot")), "--tls-key", str(self.key("pilot"))] + [
            "--tls-client-ca",
            str(self.root),
        ]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if sans:
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(usage, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def write_tls_files(directory: Path) -> TlsFiles:
    """A root, Pilot's serving pair and the load generators' client pair, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("bench root", root_key, None, [])
    files.root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    leaves: dict[str, list[x509.GeneralName]] = {
        "pilot": [x509.DNSName(PILOT_NAME), x509.UniformResourceIdentifier(PILOT_ID)],
        "client": [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/bench/sa/default")],
    }
    for who, sans in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(who, key, (root.subject, root_key), sans)
        files.cert(who).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key(who).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return files
