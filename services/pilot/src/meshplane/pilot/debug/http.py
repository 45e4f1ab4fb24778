"""FastAPI app: /ready, /metrics, /debug/{syncz,config_dump,configz,registryz,push_status}.

Bad input (a missing or unknown proxyID) gets a 4xx with a message naming what is wrong.
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


def build_app(metrics: Metrics, state: State, server: ServerFn, ready: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="meshplane-pilot", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/ready")
    def _ready() -> Response:
        if ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready: replaying the bus\n", status_code=503)

    @app.get("/metrics")
    def _metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/debug/syncz")
    def _syncz() -> Any:
        s = server()
        return syncz(s) if s else []

    @app.get("/debug/config_dump")
    def _config_dump(proxy_id: str = Query("", alias="proxyID")) -> Response:
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
    def _configz() -> Any:
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
    def _registryz() -> Any:
        s = server()
        services = s.ctx.services if s else list(state.services.values())
        return [dataclasses.asdict(svc) for svc in services]

    @app.get("/debug/push_status")
    def _push_status() -> Any:
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
