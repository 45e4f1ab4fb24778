"""Two real Envoys talk mTLS with certificates and roots served by their node agents over SDS."""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"
SERVER_ID = "spiffe://cluster.local/ns/default/sa/server"


def test_envoys_talk_mtls_and_app_sees_caller_spiffe_id(make_mesh: Callable[..., Any]) -> None:
    mesh = make_mesh()
    response = httpx.get(mesh.url, timeout=10)
    assert response.status_code == 200
    assert f"URI={CLIENT_ID}" in response.text
    # each Envoy holds a workload cert for its own identity, from its own agent
    assert mesh.client_envoy.cert_uris() == {CLIENT_ID}
    assert mesh.server_envoy.cert_uris() == {SERVER_ID}
    assert len(mesh.client_envoy.root_serials()) == 1
    # the SDS socket is for its owner only
    assert stat.S_IMODE(mesh.client_agent.socket.stat().st_mode) & 0o077 == 0
