"""Whether a Kubernetes Secret holds a usable TLS credential (a current PEM certificate and a key)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography import x509

from meshplane.shared.analysis.context import Resource

#: (certificate key, private key key) pairs Istio reads, in its order: generic and kubernetes.io/tls.
KEY_PAIRS = (("cert", "key"), ("tls.crt", "tls.key"))


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


def valid_tls_credential(secret: Resource, now: datetime | None = None) -> bool:
    """As Istio's gateway SecretAnalyzer: a non-empty certificate and key (``cert``/``key`` first, then
    ``tls.crt``/``tls.key``) whose first PEM certificate parses and is valid at ``now``. The key itself
    is not checked (Istio does not either)."""
    for cert_key, key_key in KEY_PAIRS:
        cert_pem, key_pem = _field(secret, cert_key), _field(secret, key_key)
        if not cert_pem or not key_pem:
            continue
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            return False
        at = now or datetime.now(UTC)
        return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
    return False
