"""Kubernetes code (TokenReview authn, istio-ca-root-cert ConfigMaps) driven through the official
client against recorded API responses (no API server can run here): a loopback HTTP server
replays the JSON bodies in ``testdata/`` and records what the client sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from meshplane.citadel.ca.errors import AuthenticationError
from meshplane.citadel.kube import sync_root_configmaps
from meshplane.citadel.server.authn import Caller, TokenReviewAuthenticator

pytestmark = pytest.mark.timeout(30)

TESTDATA = Path(__file__).parent / "testdata"


@dataclass
class Replay:
    """Routes (method, path) → (status, recording file); records (method, path, body) received."""

    routes: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def replay() -> Iterator[Replay]:
    state = Replay()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?", 1)[0]
            state.received.append((self.command, path, body))
            status, name = state.routes.get((self.command, path), (404, "configmap-not-found.json"))
            data = (TESTDATA / name).read_bytes() if name else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def api_client(url: str) -> client.ApiClient:
    config = client.Configuration()
    config.host = url
    return client.ApiClient(config)


REVIEW_PATH = ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")


def authenticator(replay: Replay) -> TokenReviewAuthenticator:
    return TokenReviewAuthenticator(
        client.AuthenticationV1Api(api_client(replay.url)), ["istio-ca"], "cluster.local"
    )


async def test_tokenreview_recorded_api_authenticated_service_account(replay: Replay) -> None:
    replay.routes[REVIEW_PATH] = (201, "tokenreview-authenticated.json")
    caller = Caller(metadata={"authorization": "Bearer projected-token"})
    identity = await authenticator(replay).authenticate(caller)
    assert identity == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
    method, path, body = replay.received[0]
    assert (method, path) == REVIEW_PATH
    assert body["spec"] == {"token": "projected-token", "audiences": ["istio-ca"]}


@pytest.mark.parametrize("recording", ["tokenreview-wrong-audience.json", "tokenreview-user-not-sa.json"])
async def test_tokenreview_recorded_api_refusals(replay: Replay, recording: str) -> None:
    replay.routes[REVIEW_PATH] = (201, recording)
    with pytest.raises(AuthenticationError):
        await authenticator(replay).authenticate(Caller(metadata={"authorization": "Bearer t"}))


async def test_tokenreview_recorded_api_without_token_is_not_attempted(replay: Replay) -> None:
    assert await authenticator(replay).authenticate(Caller(metadata={})) is None
    assert replay.received == []


def test_root_configmap_recorded_api_created_and_updated(replay: Replay) -> None:
    cm = "/configmaps/istio-ca-root-cert"
    replay.routes[("GET", "/api/v1/namespaces")] = (200, "namespaces.json")
    replay.routes[("GET", "/api/v1/namespaces/bookinfo" + cm)] = (404, "configmap-not-found.json")
    replay.routes[("GET", "/api/v1/namespaces/istio-system" + cm)] = (200, "configmap-existing.json")
    replay.routes[("POST", "/api/v1/namespaces/bookinfo/configmaps")] = (201, "")
    replay.routes[("PUT", "/api/v1/namespaces/istio-system" + cm)] = (200, "")
    roots = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n"
    written = sync_root_configmaps(client.CoreV1Api(api_client(replay.url)), roots)
    assert written == 2
    writes = {(m, p): b for m, p, b in replay.received if m in ("POST", "PUT")}
    for body in writes.values():
        assert body["metadata"]["name"] == "istio-ca-root-cert"
        assert body["metadata"]["labels"] == {"istio.io/config": "true"}
        assert body["data"] == {"root-cert.pem": roots}
    assert set(writes) == {
        ("POST", "/api/v1/namespaces/bookinfo/configmaps"),
        ("PUT", "/api/v1/namespaces/istio-system" + cm),
    }
