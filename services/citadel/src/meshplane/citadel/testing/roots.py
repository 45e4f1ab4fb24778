"""Roots for trust-bundle tests: Istio's same-key rotation of a CA's root, and an unrelated root."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from meshplane.citadel.ca.keycert import CA_KEY, make_root, new_key, to_pem


def reissued_root(ca_dir: Path, org: str = "cluster.local", ttl: dt.timedelta = dt.timedelta(days=2)) -> str:
    """A new self-signed root with the key of ``ca_dir``'s CA and a fresh TTL, as Istio's rotator
    makes one (the current root's key signs it)."""
    key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    return to_pem(make_root(key, org, ttl)).strip()  # type: ignore[arg-type]


def foreign_root(org: str = "cluster.local") -> str:
    """A self-signed root of a key nobody in the mesh trusts (same trust domain name)."""
    return to_pem(make_root(new_key("ec"), org, dt.timedelta(days=1))).strip()
