"""FastAPI app: /ready, /metrics, /debug/{syncz,config_dump,configz,registryz,push_status}.

Bad input (a missing or unknown proxyID) gets a 4xx with a message naming what is wrong.

Every handler is ``async def`` so it runs on the event loop, between the loop's own steps: the
state it reads (connections, the push context, the resource cache, which ``config_dump`` also
fills) is only ever touched from that one thread. A plain ``def`` would run on a worker thread,
racing the loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meshplane.pilot.debug.syncz import config_dump, syncz
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.xds.discovery import DiscoveryServer

ServerFn = Callable[[], DiscoveryServer | None]


def build_app(
    metrics: Metrics, state: State, server: ServerFn, not_ready: Callable[[], str | None]
) -> FastAPI:
    """``not_ready`` returns why Pilot is not ready (the 503 body), or None when it is."""
    app = FastAPI(title="meshplane-pilot", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/ready")
    async def _ready() -> Response:
        reason = not_ready()
        if reason is None:
            return PlainTextResponse("ready\n")
        return PlainTextResponse(f"not ready: {reason}\n", status_code=503)

    @app.get("/metrics")
    async def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/debug/syncz")
    async def _syncz() -> Any:
        s = server()
        return syncz(s) if s else []

    @app.get("/debug/config_dump")
    async def _config_dump(proxy_id: str = Query("", alias="proxyID")) -> Response:
        s = server()
        if not proxy_id:
            return JSONResponse({"error": "missing query parameter proxyID (POD.NAMESPACE)"}, status_code=400)
        conns = s.connections_for(proxy_id) if s else []
        if not conns:
            return JSONResponse(
                {"error": f"proxy {proxy_id!r} is not connected to this Pilot instance"}, status_code=404
            )
        return JSONResponse(config_dump(s, conns[-1]))  # type: ignore[arg-type]

    @app.get("/debug/configz")
    async def _configz() -> Any:
        return [
            {
                "kind": c.kind,
                "group": c.group,
                "version": c.version,
                "namespace": c.namespace,
                "name": c.name,
                "resourceVersion": c.resource_version,
                "spec": c.spec,
            }
            for c in sorted(state.configs.values(), key=lambda c: (c.kind, c.namespace, c.name))
        ]

    @app.get("/debug/registryz")
    async def _registryz() -> Any:
        s = server()
        services = s.ctx.services if s else list(state.services.values())
        return [dataclasses.asdict(svc) for svc in services]

    @app.get("/debug/push_status")
    async def _push_status() -> Any:
        s = server()
        if s is None:
            return {}
        return {
            **s.last_push,
            "pushes": s.push_count,
            "queued": s.queue.pending(),
            "cache_hits": s.cache.hits,
            "cache_misses": s.cache.misses,
        }

    return app
