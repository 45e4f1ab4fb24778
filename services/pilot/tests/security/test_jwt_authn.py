"""RequestAuthentication → jwt_authn providers, and Pilot's JWKS fetcher against a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from meshplane.pilot.generators.security.jwt_authn import jwt_filter, unusable_jwks
from meshplane.pilot.security.jwks import JwksResolver
from meshplane.pilot.settings import Settings
from meshplane.shared.testing.polling import eventually

from .helpers import NS, cfg, context

LABELS = {"app": "cart"}
JWKS = json.dumps({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]})
#: What the test server answers on /rotating (tests change it to see a refresh).
ROTATING = {"doc": JWKS}


def ra(spec: dict[str, Any], name: str = "jwt") -> Any:
    return cfg("RequestAuthentication", name, spec)


def _config(ctx: Any) -> jwt_pb2.JwtAuthentication:
    f = jwt_filter(ctx, NS, LABELS)
    assert f is not None and f.name == "envoy.filters.http.jwt_authn"
    out = jwt_pb2.JwtAuthentication()
    assert f.typed_config.Unpack(out)
    return out


def test_no_request_authentication_no_filter() -> None:
    assert jwt_filter(context(), NS, LABELS) is None
    other = ra({"selector": {"matchLabels": {"app": "web"}}, "jwtRules": [{"issuer": "i", "jwks": JWKS}]})
    assert jwt_filter(context(other), NS, LABELS) is None


def test_providers_inline_jwks_and_missing_token_allowed() -> None:
    spec = {
        "jwtRules": [
            {
                "issuer": "https://a",
                "jwks": JWKS,
                "audiences": ["cart"],
                "fromHeaders": [{"name": "x-jwt", "prefix": "T "}],
            },
            {"issuer": "https://b", "jwksUri": "http://keys.example/b.json", "forwardOriginalToken": True},
        ]
    }
    config = _config(context(ra(spec), jwks={"http://keys.example/b.json": '{"keys": []}'}))
    a, b = config.providers["origins-0"], config.providers["origins-1"]
    assert a.issuer == "https://a" and a.local_jwks.inline_string == JWKS and list(a.audiences) == ["cart"]
    assert a.from_headers[0].name == "x-jwt" and a.from_headers[0].value_prefix == "T "
    assert a.payload_in_metadata == "payload"
    assert b.local_jwks.inline_string == '{"keys": []}' and b.forward
    reqs = config.rules[0].requires.requires_any.requirements
    assert [r.provider_name for r in reqs[:2]] == ["origins-0", "origins-1"]
    assert reqs[2].HasField("allow_missing")


def test_unfetched_jwks_uri_fails_closed() -> None:
    config = _config(context(ra({"jwtRules": [{"issuer": "i", "jwksUri": "http://nowhere/jwks"}]})))
    keys = json.loads(config.providers["origins-0"].local_jwks.inline_string)["keys"]
    assert keys[0]["kty"] == "EC" and "d" not in keys[0]  # a public key only; its private key is gone
    assert config.providers["origins-0"].local_jwks.inline_string == unusable_jwks()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host, port = self.server.server_address[:2]
        discovery = json.dumps({"issuer": f"http://{host}:{port}", "jwks_uri": f"http://{host}:{port}/good"})
        bodies = {"/good": JWKS, "/rotating": ROTATING["doc"], "/.well-known/openid-configuration": discovery}
        body = bodies.get(self.path, "<html>").encode()
        self.send_response(200 if self.path in bodies else 500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(30)
async def test_resolver_fetches_pushes_and_inlines(http_base: str) -> None:
    changed = asyncio.Event()
    resolver = JwksResolver(3600, changed.set)
    spec = {
        "jwtRules": [
            {"issuer": "a", "jwksUri": f"{http_base}/good"},
            {"issuer": "b", "jwksUri": f"{http_base}/bad"},
        ]
    }
    first = resolver.attach(context(ra(spec)))
    assert first.jwks == {}  # not fetched yet: the generator fails closed meanwhile
    await asyncio.wait_for(changed.wait(), 10)
    second = resolver.attach(context(ra(spec)))
    assert second.jwks == {f"{http_base}/good": JWKS}
    config = _config(second)
    assert config.providers["origins-0"].local_jwks.inline_string == JWKS
    assert config.providers["origins-1"].local_jwks.inline_string == unusable_jwks()


@pytest.mark.timeout(30)
async def test_resolver_finds_keys_through_openid_discovery(http_base: str) -> None:
    changed = asyncio.Event()
    resolver = JwksResolver(3600, changed.set)
    spec = {"jwtRules": [{"issuer": http_base}]}
    resolver.attach(context(ra(spec)))
    await asyncio.wait_for(changed.wait(), 10)
    config = _config(resolver.attach(context(ra(spec))))
    assert config.providers["origins-0"].local_jwks.inline_string == JWKS


def test_refresh_interval_setting() -> None:
    assert Settings.from_env({}).jwt_refresh == 1200.0  # Istio's 20m default
    assert Settings.from_env({"PILOT_JWT_PUB_KEY_REFRESH_INTERVAL": "1h"}).jwt_refresh == 3600.0


@pytest.mark.timeout(30)
async def test_resolver_refresh_picks_up_rotated_keys(http_base: str) -> None:
    changes: list[int] = []
    interval = Settings.from_env({"PILOT_JWT_PUB_KEY_REFRESH_INTERVAL": "100ms"}).jwt_refresh
    resolver = JwksResolver(interval, lambda: changes.append(1))
    spec = {"jwtRules": [{"issuer": "a", "jwksUri": f"{http_base}/rotating"}]}
    resolver.attach(context(ra(spec)))
    task = asyncio.create_task(resolver.run())
    try:

        async def fetched() -> bool:
            return bool(changes)

        await eventually(fetched, "the first fetch", 10)
        rotated = json.dumps({"keys": [{"kty": "oct", "kid": "k2", "k": "b3RoZXI"}]})
        ROTATING["doc"] = rotated

        async def refreshed() -> bool:
            return resolver.attach(context(ra(spec))).jwks.get(f"{http_base}/rotating") == rotated

        await eventually(refreshed, "the rotated keys after a refresh", 10)
        assert len(changes) >= 2
    finally:
        ROTATING["doc"] = JWKS
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
