"""JWT authentication against a configured issuer whose JWKS is served over HTTP (PyJWKClient)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from meshplane.citadel.ca.errors import AuthenticationError
from meshplane.citadel.server.authn import Caller, JwtAuthenticator

pytestmark = pytest.mark.timeout(30)

ISSUER = "https://oidc.example.test"
KEY = rsa.generate_private_key(65537, 2048)


@pytest.fixture
def jwks_url() -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()


def token(sub: str, aud: str = "istio-ca", kid: str = "k1", key: rsa.RSAPrivateKey = KEY) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "aud": aud, "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def caller(t: str) -> Caller:
    return Caller(metadata={"authorization": f"Bearer {t}"})


async def test_jwks_over_http(jwks_url: str) -> None:
    authn = JwtAuthenticator({ISSUER: jwks_url}, ["istio-ca"], "example.org")
    identity = await authn.authenticate(caller(token("system:serviceaccount:ns1:sa1")))
    assert identity == "spiffe://example.org/ns/ns1/sa/sa1"


@pytest.mark.parametrize(
    "bad",
    [
        token("system:serviceaccount:ns1:sa1", aud="vault"),
        token("system:serviceaccount:ns1:sa1", key=rsa.generate_private_key(65537, 2048)),
        token("alice@example.org"),
        token("system:serviceaccount:onlyns"),
    ],
)
async def test_jwks_over_http_refusals(jwks_url: str, bad: str) -> None:
    authn = JwtAuthenticator({ISSUER: jwks_url}, ["istio-ca"], "example.org")
    with pytest.raises(AuthenticationError):
        await authn.authenticate(caller(bad))


async def test_unknown_issuer_is_left_to_other_authenticators(jwks_url: str) -> None:
    authn = JwtAuthenticator({"https://someone-else": jwks_url}, ["istio-ca"], "example.org")
    assert await authn.authenticate(caller(token("system:serviceaccount:a:b"))) is None
