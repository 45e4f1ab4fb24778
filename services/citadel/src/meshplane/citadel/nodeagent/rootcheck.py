"""Which roots from the bus a node agent may hand to its workloads as ``ROOTCA``.

The bus says who published a trust bundle (only Citadel's identity may write the trust bucket),
and this module checks what was published: every root must chain to a root the agent already
trusts. The first anchors are the agent's ``--ca-root`` (the root it verifies Citadel's TLS with,
Istio's ``istio-ca-root-cert``); a root is then accepted when

* it is already trusted, or
* it is signed by the key of a trusted root: Istio's self-signed root rotation re-issues the root
  with the **same key** and a fresh TTL (``selfsignedcarootcertrotator.go``, and
  ``meshplane.citadel.ca.rotation`` here), so the new root's signature verifies with the current
  root's public key; a new root cross-signed by the current one verifies the same way.

A bundle with any other root is refused whole and the agent keeps the roots it had. Accepted roots
become anchors, so rotation can go on from one root to the next.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

log = logging.getLogger(__name__)


class UntrustedRoot(Exception):
    """A bundle holds a root that no trusted root signed."""


def _load(pem: str, where: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise UntrustedRoot(f"{where}: not a PEM certificate ({exc})") from None


def _signed_by(cert: x509.Certificate, signer: x509.Certificate) -> bool:
    """True when ``signer``'s public key verifies ``cert``'s signature."""
    key = signer.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class RootGate:
    """The node agent's trusted roots and the check every new bundle passes."""

    def __init__(self, anchor_file: Path | None) -> None:
        self._anchor_file = anchor_file
        self._accepted: list[x509.Certificate] = []

    def anchors(self) -> list[x509.Certificate]:
        """The roots from ``--ca-root`` (re-read: a mounted ConfigMap changes) and those accepted since."""
        out = list(self._accepted)
        if self._anchor_file is not None:
            try:
                out += x509.load_pem_x509_certificates(self._anchor_file.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("cannot read the trusted root %s: %s", self._anchor_file, exc)
        return out

    def check(self, roots_pem: list[str]) -> list[str]:
        """``roots_pem`` when every root is trusted or signed by a trusted root's key; else raises
        :class:`UntrustedRoot` naming the first root that is not."""
        if not roots_pem:
            raise UntrustedRoot("the bundle holds no root")
        anchors = self.anchors()
        if not anchors:
            raise UntrustedRoot("no trusted root to check the bundle against (--ca-root)")
        certs: list[x509.Certificate] = []
        for i, pem in enumerate(roots_pem):
            for cert in _load(pem, f"root {i}"):
                if not _is_ca(cert):
                    raise UntrustedRoot(f"root {i} ({cert.subject.rfc4514_string()}) is not a CA certificate")
                if not any(cert == a or _signed_by(cert, a) for a in anchors):
                    raise UntrustedRoot(
                        f"root {i} ({cert.subject.rfc4514_string()}) is not signed by a trusted root's key"
                    )
                certs.append(cert)
        for cert in certs:
            if cert not in self._accepted:
                self._accepted.append(cert)
        return roots_pem
