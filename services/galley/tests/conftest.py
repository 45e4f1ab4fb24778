"""Fixtures for galley's component tests: the webhook app over httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from meshplane.galley.api.apps import create_webhook_app
from meshplane.galley.api.state import GalleyState


@pytest.fixture
async def webhook() -> AsyncIterator[httpx.AsyncClient]:
    app = create_webhook_app(GalleyState(ready=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://galley") as client:
        yield client
