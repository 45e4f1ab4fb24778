"""``meshctl cacerts``: one root, and a plugged-in intermediate CA per cluster under it.

Istio's multi-cluster trust (``tools/certs`` in Istio: ``make root-ca``, ``make <cluster>-cacerts``):
every cluster's CA is an intermediate of one shared root, so a workload certificate from any
cluster verifies against the root every cluster trusts. The files are Istio's ``cacerts`` layout,
which Citadel loads as a plugged-in CA::

    DIR/root-cert.pem, DIR/root-key.pem                 the root (made once, reused)
    DIR/<cluster>/ca-cert.pem, ca-key.pem               the cluster's intermediate and its key
    DIR/<cluster>/cert-chain.pem                        intermediate + root
    DIR/<cluster>/root-cert.pem                         the root

``--kubernetes`` prints the cluster's ``cacerts`` Secret (for Citadel's namespace) as YAML.
Private keys are written mode 0600 and an existing cluster directory is never overwritten.
Defaults as Istio's tooling: root 10 years, intermediates 2 years; keys are EC P-256.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import re
import sys
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshplane.ctl.errors import EXIT_OK, EXIT_USAGE, error

ROOT_DAYS, INTERMEDIATE_DAYS = 3650, 730
_CLUSTER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class CacertsError(Exception):
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cacerts", help="make a shared root and a plugged-in intermediate CA per cluster")
    p.add_argument("--root-dir", required=True, type=Path, help="the root's directory (made if missing)")
    p.add_argument("--cluster", action="append", default=[], help="cluster name (repeatable)")
    p.add_argument("--kubernetes", action="store_true", help="print each cluster's cacerts Secret as YAML")
    p.add_argument("--namespace", default="meshplane-system", help="namespace of the Secrets")
    p.add_argument("--intermediate-days", type=int, default=INTERMEDIATE_DAYS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if not args.cluster:
            raise CacertsError("name at least one --cluster")
        root_key, root = load_or_make_root(args.root_dir)
        secrets = []
        for cluster in args.cluster:
            made = make_cluster(args.root_dir, cluster, root_key, root, args.intermediate_days)
            secrets.append(secret(made, cluster, args.namespace))
            if not args.kubernetes:
                print(f"cluster {cluster}: {made} (plug in as Citadel's cacerts)")
    except CacertsError as exc:
        error("cacerts", str(exc))
        return EXIT_USAGE
    except OSError as exc:
        error("cacerts", f"cannot write {exc.filename}: {exc.strerror}")
        return EXIT_USAGE
    if args.kubernetes:
        yaml.safe_dump_all(secrets, sys.stdout, sort_keys=False)
    return EXIT_OK


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey, days: int, path_length: int | None,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def load_or_make_root(root_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The root in ``root_dir``, made there (key 0600) the first time."""
    key_file, cert_file = root_dir / "root-key.pem", root_dir / "root-cert.pem"
    if key_file.exists() != cert_file.exists():
        raise CacertsError(f"{root_dir}: root-key.pem and root-cert.pem must both exist or neither")
    if key_file.exists():
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        except ValueError as exc:
            raise CacertsError(f"{root_dir}: not a root this tool made: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise CacertsError(f"{root_dir}: root-key.pem does not belong to root-cert.pem")
        return key, cert
    root_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(root_dir, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Root CA"),
        ]
    )
    cert = _ca(name, key, None, key, ROOT_DAYS, path_length=None)
    _write_private(key_file, _key_pem(key))
    cert_file.write_bytes(_pem(cert))
    return key, cert


def make_cluster(
    root_dir: Path, cluster: str, root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, days: int
) -> Path:
    """``root_dir/<cluster>/`` with the cluster's intermediate in the cacerts layout."""
    if not _CLUSTER.match(cluster):
        raise CacertsError(f"cluster {cluster!r}: expected a DNS label (lower case letters, digits, '-')")
    out = root_dir / cluster
    if out.exists():
        raise CacertsError(f"{out} exists: its CA is in use or was made before; remove it to make a new one")
    out.mkdir(mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, cluster),
        ]
    )
    cert = _ca(name, key, root, root_key, days, path_length=0)
    _write_private(out / "ca-key.pem", _key_pem(key))
    (out / "ca-cert.pem").write_bytes(_pem(cert))
    (out / "cert-chain.pem").write_bytes(_pem(cert) + _pem(root))
    (out / "root-cert.pem").write_bytes(_pem(root))
    return out


def secret(cluster_dir: Path, cluster: str, namespace: str) -> dict[str, object]:
    files = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "cacerts",
            "namespace": namespace,
            "labels": {"topology.istio.io/cluster": cluster},
        },
        "data": {f: base64.b64encode((cluster_dir / f).read_bytes()).decode() for f in files},
    }
