"""Two real Envoys talk mTLS with certificates and roots served by their node agents over SDS."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"


def test_envoys_talk_mtls_and_app_sees_caller_spiffe_id(make_mesh: Callable[..., object]) -> None:
    mesh = make_mesh()
    response = httpx.get(mesh.url, timeout=10)  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert f"URI={CLIENT_ID}" in response.text
    # each Envoy holds a workload cert issued by citadel for its own identity
    assert len(mesh.client_envoy.cert_serials()) >= 1  # type: ignore[attr-defined]
