"""Workload mTLS, PeerAuthentication, AuthorizationPolicy and RequestAuthentication end to end:
Istio YAML into Galley's directory → Pilot → two real sidecar Envoys with Citadel certificates.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300), pytest.mark.xdist_group("security-mesh")]

NS = "default"
CLIENT_ID = f"spiffe://cluster.local/ns/{NS}/sa/client"
ISSUER = "https://issuer.meshplane.test"


def _doc(kind: str, name: str, spec: dict[str, Any], ns: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _mode(mode: str) -> dict[str, Any]:
    return _doc("PeerAuthentication", "default", {"mtls": {"mode": mode}})


def _observe(mesh: Any, what: str) -> int:
    """``"client|plaintext PATH [TOKEN]"`` → the status code that request gets."""
    via, path, *token = what.split(" ")
    if via == "plaintext":
        return int(mesh.plaintext(path).status_code)
    return int(mesh.via_client(path, _bearer(token[0]) if token else None).status_code)


def _expect(mesh: Any, expected: dict[str, int]) -> None:
    """Wait until every request gets its expected status at once (Galley publishes objects one
    by one, so an intermediate config may satisfy some of them), then check once more."""
    mesh.wait(lambda: {k: _observe(mesh, k) for k in expected} == expected, f"statuses {expected}")
    assert {k: _observe(mesh, k) for k in expected} == expected


def _plaintext_refused(mesh: Any) -> bool:
    try:
        mesh.plaintext()
    except httpx.HTTPError:
        return True
    return False


def _xfcc(mesh: Any) -> str:
    resp = mesh.via_client()
    assert resp.status_code == 200, resp.text
    return str(resp.json()["headers"].get("x-forwarded-client-cert", ""))


def test_strict_mtls_carries_caller_identity_and_refuses_plaintext(mesh: Any) -> None:
    mesh.apply(_mode("STRICT"))
    mesh.wait(lambda: _plaintext_refused(mesh), "STRICT refusing plaintext")
    xfcc = _xfcc(mesh)
    assert f"URI={CLIENT_ID}" in xfcc
    # a client cannot claim an identity: the sidecar replaces x-forwarded-client-cert
    forged = mesh.via_client(headers={"x-forwarded-client-cert": "URI=spiffe://cluster.local/ns/x/sa/admin"})
    assert "sa/admin" not in forged.json()["headers"]["x-forwarded-client-cert"]


def test_permissive_takes_plaintext_and_mtls(mesh: Any) -> None:
    mesh.apply(_mode("PERMISSIVE"))
    mesh.wait(lambda: mesh.plaintext().status_code == 200, "PERMISSIVE accepting plaintext")
    assert "x-forwarded-client-cert" not in mesh.plaintext().json()["headers"]
    assert f"URI={CLIENT_ID}" in _xfcc(mesh)


def test_authorization_policy_denies_principal_and_path(mesh: Any) -> None:
    allow_client = _doc(
        "AuthorizationPolicy",
        "allow-client",
        {
            "selector": {"matchLabels": {"app": "server"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/client"]}}]}],
        },
    )
    deny_admin = _doc(
        "AuthorizationPolicy",
        "deny-admin",
        {
            "action": "DENY",
            "rules": [
                {"to": [{"operation": {"paths": ["/admin*"]}}]},
                {
                    "from": [{"source": {"principals": ["cluster.local/ns/default/sa/client"]}}],
                    "to": [{"operation": {"paths": ["/private"], "methods": ["GET"]}}],
                },
            ],
        },
    )
    mesh.apply(_mode("PERMISSIVE"), allow_client, deny_admin)
    expected = {
        "client /admin/users": 403,  # denied path
        "client /reviews": 200,
        "client /private": 403,  # this principal is denied here
        "plaintext /admin": 403,
        "plaintext /reviews": 403,  # plaintext callers have no principal: not allowed
    }
    _expect(mesh, expected)
    # spec: {} denies everything (an ALLOW policy without rules)
    mesh.apply(_mode("PERMISSIVE"), _doc("AuthorizationPolicy", "deny-all", {}))
    _expect(mesh, {"client /reviews": 403, "client /admin": 403, "plaintext /reviews": 403})


def _key_and_jwks(kid: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return key, json.dumps({"keys": [jwk]})


def _token(key: ec.EllipticCurvePrivateKey, kid: str, sub: str = "alice") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def _jwt_policies(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _mode("STRICT"),
        _doc(
            "RequestAuthentication",
            "jwt",
            {"selector": {"matchLabels": {"app": "server"}}, "jwtRules": [{"issuer": ISSUER, **rule}]},
        ),
        _doc(
            "AuthorizationPolicy",
            "need-jwt",
            {
                "selector": {"matchLabels": {"app": "server"}},
                "rules": [{"from": [{"source": {"requestPrincipals": [f"{ISSUER}/alice"]}}]}],
            },
        ),
    ]


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _check_jwt(mesh: Any, good: str, wrong_key: str, other_sub: str) -> None:
    expected = {
        "client /data": 403,  # no token: passes authentication as nobody, the rule needs alice
        f"client /data {wrong_key}": 401,
        "client /data not.a.jwt": 401,
        f"client /data {other_sub}": 403,
        f"client /data {good}": 200,
    }
    _expect(mesh, expected)


def test_request_authentication_with_jwks_uri(mesh: Any, jwks_server: Any) -> None:
    key, document = _key_and_jwks("k1")
    jwks_server.document = document
    stranger, _ = _key_and_jwks("k1")
    mesh.apply(*_jwt_policies({"jwksUri": jwks_server.url}))
    good = _token(key, "k1")
    _check_jwt(mesh, good, _token(stranger, "k1"), _token(key, "k1", sub="bob"))


def test_request_authentication_with_inline_jwks(mesh: Any) -> None:
    key, document = _key_and_jwks("inline")
    stranger, _ = _key_and_jwks("inline")
    mesh.apply(*_jwt_policies({"jwks": document}))
    good = _token(key, "inline")
    _check_jwt(mesh, good, _token(stranger, "inline"), _token(key, "inline", sub="bob"))


def _dr(tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "server", "namespace": NS},
        "spec": {"host": "server.default.svc.cluster.local", "trafficPolicy": {"tls": tls}},
    }


def test_destination_rule_tls_overrides_auto_mtls_and_san_is_checked(mesh: Any) -> None:
    # DISABLE: the client sends plaintext, which the STRICT server refuses
    mesh.apply(_mode("STRICT"), _dr({"mode": "DISABLE"}))
    _expect(mesh, {"client /": 503})
    # ISTIO_MUTUAL without subjectAltNames: the server's service account is checked
    mesh.apply(_mode("STRICT"), _dr({"mode": "ISTIO_MUTUAL"}))
    _expect(mesh, {"client /": 200})
    assert f"URI={CLIENT_ID}" in _xfcc(mesh)
    # a SAN the server's certificate does not carry: the client refuses the server
    other = {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["spiffe://cluster.local/ns/default/sa/impostor"]}
    mesh.apply(_mode("STRICT"), _dr(other))
    _expect(mesh, {"client /": 503})
