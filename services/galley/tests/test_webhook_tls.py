"""The webhook served over HTTPS by a real uvicorn server; certificate files reload without restart."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from meshplane.galley.api.apps import create_webhook_app
from meshplane.galley.api.server import HttpServer
from meshplane.galley.api.state import GalleyState
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.polling import eventually

from .reviews import encode, review, virtual_service

pytestmark = pytest.mark.timeout(60)


def _client_for(cert: Path) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(cert))
    return httpx.AsyncClient(verify=ctx, timeout=10)


async def _served_common_name(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.rfc4514_string())


async def test_webhook_over_tls_and_certificate_reload(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, "galley-one")
    server = HttpServer(
        create_webhook_app(GalleyState(ready=True)),
        "127.0.0.1",
        0,
        name="webhook",
        tls_cert=cert,
        tls_key=key,
    )
    await server.start()
    try:
        url = f"https://127.0.0.1:{server.port}/validate"
        async with _client_for(cert) as client:
            resp = await client.post(
                url, content=encode(review(virtual_service())), headers={"Content-Type": "application/json"}
            )
        assert resp.status_code == 200
        assert resp.json()["response"]["allowed"] is True
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.post(f"http://127.0.0.1:{server.port}/validate", content=b"{}")

        assert await _served_common_name(server.port) == "CN=galley-one"
        write_self_signed(tmp_path, "galley-two")

        async def renewed() -> bool:
            return await _served_common_name(server.port) == "CN=galley-two"

        await eventually(renewed, "the server to present the new certificate")
        async with _client_for(cert) as client:
            resp = await client.get(f"https://127.0.0.1:{server.port}/healthz")
        assert resp.status_code == 200
    finally:
        await server.stop()
