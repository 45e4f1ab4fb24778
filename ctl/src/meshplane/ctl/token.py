"""`meshctl token`: print a service-account token signed by a local Citadel's issuer key.

The claims are those of a Kubernetes projected service-account token (iss, sub
``system:serviceaccount:NS:SA``, aud, exp, iat, nbf, ``kubernetes.io`` {namespace,
serviceaccount}), so the node agent uses it exactly as it would a projected token.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from meshplane.ctl.errors import EXIT_USAGE, error
from meshplane.shared.durations import parse_duration

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="print a workload token signed by a local Citadel's issuer")
    p.add_argument("--ca-dir", required=True, help="the --ca-dir of the local meshplane-citadel")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--service-account", required=True)
    p.add_argument("--audience", default="istio-ca")
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 600s, 30m, 1h, 7d")
    p.set_defaults(func=run)


def make_token(ca_dir: Path, namespace: str, service_account: str, audience: str, ttl: int) -> str:
    """Sign the token; raise ValueError naming what is wrong."""
    for label, value in (("namespace", namespace), ("service account", service_account)):
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{label} {value!r} is not a valid Kubernetes name")
    try:
        info = json.loads((ca_dir / "issuer.json").read_text())
        key = serialization.load_pem_private_key((ca_dir / "issuer-key.pem").read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ValueError(f"{exc.filename} not found: start meshplane-citadel with --ca-dir {ca_dir}") from exc
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable issuer files in {ca_dir}: {exc}") from exc
    now = int(time.time())
    claims = {
        "iss": info["issuer"],
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": [audience],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account}},
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": info["kid"]})  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    try:
        ttl = int(parse_duration(args.ttl, days=True, signed=False).total_seconds())
    except ValueError:
        ttl = 0
    if ttl <= 0:
        error("token", f"--ttl {args.ttl!r}: expected a positive duration like 600s, 30m, 1h, 7d")
        return EXIT_USAGE
    try:
        token = make_token(Path(args.ca_dir), args.namespace, args.service_account, args.audience, ttl)
    except ValueError as exc:
        error("token", str(exc))  # a bad name, or a Citadel CA directory that cannot be read
        return EXIT_USAGE
    print(token)
    return 0
