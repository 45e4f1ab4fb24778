"""meshplane-galley --tls-cert/--tls-key as a process: the webhook answers over HTTPS only."""

from __future__ import annotations

import copy
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.shared.natsserver import NatsServer
from meshplane.shared.testing.certs import write_self_signed

from .process import run_galley

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REVIEW: dict[str, Any] = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "tls-1",
        "kind": {"group": "networking.istio.io", "version": "v1", "kind": "Gateway"},
        "operation": "CREATE",
        "object": {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]
            },
        },
    },
}


async def test_webhook_over_https_from_the_process(nats_server: NatsServer, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    cert, key = write_self_signed(tmp_path, "galley.istio-system.svc")
    assert key.stat().st_mode & 0o777 == 0o600
    with run_galley(
        nats_server.url, conf, tmp_path / "galley.log", "--tls-cert", str(cert), "--tls-key", str(key)
    ) as galley:
        await galley.wait_ready()
        ctx = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
            resp = await client.post(
                f"https://127.0.0.1:{galley.webhook_port}/validate",
                content=json.dumps(REVIEW),
                headers={"Content-Type": "application/json"},
            )
            assert resp.json()["response"] == {"uid": "tls-1", "allowed": True}
            bad = copy.deepcopy(REVIEW)
            bad["request"]["object"]["spec"] = {}  # a Gateway needs servers
            denied = await client.post(
                f"https://127.0.0.1:{galley.webhook_port}/validate/",
                content=json.dumps(bad),
                headers={"Content-Type": "application/json"},
            )
            assert denied.json()["response"]["allowed"] is False
            assert denied.json()["response"]["status"]["message"].startswith("configuration is invalid: ")
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{galley.webhook_port}/healthz")
