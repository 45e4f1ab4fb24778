"""Fetch and refresh the JWKS of every RequestAuthentication ``jwksUri``, as istiod does.

A rule with neither ``jwks`` nor ``jwksUri`` gets its keys through the issuer's OpenID
discovery document (its ``jwks_uri``).

Pilot inlines the keys into Envoy's jwt_authn config (``local_jwks``) so sidecars never fetch
them. ``attach`` turns each push context into one holding the documents fetched so far (push
contexts are frozen) and starts fetching new URIs in the background; a fetched or changed
document triggers a full push through ``on_change``. Every URI is re-fetched each
``PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`` (20m); a failing fetch keeps the last good document
(none yet: tokens fail closed) and is logged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from meshplane.pilot.generators.security.jwt_authn import OPENID_PREFIX, jwks_uris
from meshplane.pilot.model.push_context import PushContext

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("meshplane.pilot.jwks")


class JwksResolver:
    def __init__(self, refresh_seconds: float, on_change: Callable[[], None], timeout: float = 5.0) -> None:
        self._refresh = refresh_seconds
        self._on_change = on_change
        self._timeout = timeout
        self._docs: dict[str, str] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._known: set[str] = set()

    def attach(self, ctx: PushContext) -> PushContext:
        """``ctx`` with the documents known now; start fetching URIs seen for the first time."""
        uris = jwks_uris(ctx)
        self._known = uris
        for uri in uris - self._docs.keys() - self._inflight.keys():
            self._start(uri)
        return ctx.with_jwks({u: d for u, d in self._docs.items() if u in uris})

    def _start(self, uri: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside the event loop (startup); the refresh loop fetches it
        task = loop.create_task(self._fetch(uri), name=f"jwks-{uri}")
        self._inflight[uri] = task
        task.add_done_callback(functools.partial(self._done, uri))

    def _done(self, uri: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(uri, None)

    async def _get(self, client: httpx.AsyncClient, url: str) -> str:
        resp = await client.get(url)
        resp.raise_for_status()
        return resp.text

    async def _fetch(self, uri: str) -> None:
        # Imported on the first fetch: httpx loads its command line (rich, pygments, click) when
        # they are installed, about a tenth of Pilot's import time, and most meshes have no jwksUri.
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                url = uri
                if uri.startswith(OPENID_PREFIX):
                    issuer = uri[len(OPENID_PREFIX) :].rstrip("/")
                    discovery = json.loads(
                        await self._get(client, f"{issuer}/.well-known/openid-configuration")
                    )
                    url = str(discovery["jwks_uri"])
                doc = await self._get(client, url)
            if not isinstance(json.loads(doc).get("keys"), list):
                raise ValueError("the document has no 'keys' list")
        except (httpx.HTTPError, ValueError, AttributeError, KeyError, TypeError) as exc:
            log.warning("fetching jwksUri %s failed: %s", uri, exc)
            return
        if self._docs.get(uri) != doc:
            self._docs[uri] = doc
            log.info("jwksUri %s fetched (%d bytes)", uri, len(doc))
            self._on_change()

    async def run(self) -> None:
        """Re-fetch every URI in use once per refresh interval."""
        while True:
            for uri in sorted(self._known):
                if uri not in self._inflight:
                    await self._fetch(uri)
            await asyncio.sleep(self._refresh)
