"""Signing: parse a PKCS#10 CSR, issue an X.509 SVID for an identity the caller proved.

Pure, synchronous crypto (run it off the event loop). The identity always comes from the
authenticated caller; whatever names the CSR asks for are ignored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.citadel.ca.errors import InvalidCSRError
from meshplane.citadel.ca.keycert import KeyCertBundle, to_pem

_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """Parse and check a PEM CSR; raise :class:`InvalidCSRError` saying what is wrong."""
    return _checked_csr(csr_pem)[0]


def _checked_csr(
    csr_pem: str,
) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePublicKey | rsa.RSAPublicKey]:
    """The CSR and its public key (decoded once: each decode costs microseconds per request)."""
    if not csr_pem.strip():
        raise InvalidCSRError("empty CSR")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidCSRError(f"CSR is not a PEM PKCS#10 request: {exc}") from exc
    if not csr.is_signature_valid:
        raise InvalidCSRError("CSR signature does not verify")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidCSRError(f"RSA key of {key.key_size} bits is too small (minimum 2048)")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidCSRError("CSR key must be EC or RSA")
    return csr, key


def sign_leaf(
    bundle: KeyCertBundle,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    uris: list[str],
    ttl: dt.timedelta,
    dns_names: list[str] | None = None,
    ips: list[str] | None = None,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Issue a leaf for ``public_key`` with exactly the given SANs (never what a CSR asked for)."""
    now = now or dt.datetime.now(dt.UTC)
    not_after = min(now + ttl, bundle.cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns_names or []]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    subject = x509.Name([]) if uris else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "istio-ca")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(bundle.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(_LEAF_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
        .add_extension(bundle.authority_key_id, critical=False)
        .sign(bundle.key, hashes.SHA256())
    )


def issue_chain(bundle: KeyCertBundle, csr_pem: str, identity: str, ttl: dt.timedelta) -> list[str]:
    """CSR → ``[leaf, intermediates..., root]`` PEMs for ``identity`` (a SPIFFE URI)."""
    _, key = _checked_csr(csr_pem)
    leaf = sign_leaf(bundle, key, [identity], ttl)
    return [to_pem(leaf), *bundle.chain_pem(), bundle.root_pem]
