"""Whether a Kubernetes Secret holds a usable TLS credential (a PEM certificate and its private key)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshplane.shared.analysis.context import Resource

#: (certificate key, private key key) pairs Istio reads: kubernetes.io/tls and generic secrets.
KEY_PAIRS = (("tls.crt", "tls.key"), ("cert", "key"))


def _field(secret: Resource, key: str) -> bytes | None:
    data, string_data = secret.obj.get("data"), secret.obj.get("stringData")
    if isinstance(string_data, Mapping) and isinstance(string_data.get(key), str):
        return str(string_data[key]).encode()
    if isinstance(data, Mapping) and isinstance(data.get(key), str):
        try:
            return base64.b64decode(str(data[key]), validate=True)
        except (binascii.Error, ValueError):
            return b""
    return None


def valid_tls_credential(secret: Resource) -> bool:
    for cert_key, key_key in KEY_PAIRS:
        cert_pem, key_pem = _field(secret, cert_key), _field(secret, key_key)
        if cert_pem is None or key_pem is None:
            continue
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            return False
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        return bool(cert.public_key().public_bytes(pem, spki) == key.public_key().public_bytes(pem, spki))
    return False
