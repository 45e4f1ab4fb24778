"""Local mode's token issuer: an EC key in ``--ca-dir`` that ``meshctl token`` signs with.

Files (created on first start): ``issuer-key.pem`` (0600), ``issuer-jwks.json`` (the public
key Citadel verifies against) and ``issuer.json`` (``{"issuer", "kid"}`` for token makers).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from meshplane.citadel.ca.keycert import key_pem, write_private, write_public

ISSUER_KEY = "issuer-key.pem"
ISSUER_JWKS = "issuer-jwks.json"
ISSUER_INFO = "issuer.json"


def local_issuer_name(trust_domain: str) -> str:
    return f"https://citadel.meshplane.local/{trust_domain}"


def ensure_local_issuer(ca_dir: Path, trust_domain: str) -> tuple[str, Path]:
    """Create the local issuer key if missing; return (issuer, path of its JWKS)."""
    issuer = local_issuer_name(trust_domain)
    key_path = ca_dir / ISSUER_KEY
    if not key_path.exists():
        write_private(key_path, key_pem(ec.generate_private_key(ec.SECP256R1())))
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: the local issuer key must be EC P-256")
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()[:12]).decode().rstrip("=")
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
    _write_if_changed(ca_dir / ISSUER_JWKS, json.dumps({"keys": [jwk]}, indent=2) + "\n")
    _write_if_changed(ca_dir / ISSUER_INFO, json.dumps({"issuer": issuer, "kid": kid}) + "\n")
    return issuer, ca_dir / ISSUER_JWKS


def _write_if_changed(path: Path, text: str) -> None:
    """Rewriting identical files on every start would wake whoever watches ``--ca-dir``."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    write_public(path, text)
