"""Starlette app: /ready, /metrics, /debug/{syncz,config_dump,configz,registryz,push_status}.

Bad input (a missing or unknown proxyID) gets a 4xx with a message naming what is wrong.

Every handler is ``async def`` so it runs on the event loop, between the loop's own steps: the
state it reads (connections, the push context, the resource cache, which ``config_dump`` also
fills) is only ever touched from that one thread. A plain ``def`` would run on a worker thread,
racing the loop.

Starlette rather than FastAPI: these few routes need no validation layer, and FastAPI's import
alone cost Pilot about 0.8 s of CPU at every start (BENCHMARKS.md, Faults), a restart's budget.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshplane.pilot.debug.syncz import config_dump, syncz
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.shared.health import health_routes

ServerFn = Callable[[], DiscoveryServer | None]


def build_app(
    metrics: Metrics, state: State, server: ServerFn, not_ready: Callable[[], str | None]
) -> Starlette:
    """``not_ready`` returns why Pilot is not ready (the 503 body), or None when it is."""

    async def sync_status(_: Request) -> Response:
        s = server()
        return _json(syncz(s) if s else [])

    async def dump(request: Request) -> Response:
        s = server()
        proxy_id = request.query_params.get("proxyID", "")
        if not proxy_id:
            return JSONResponse({"error": "missing query parameter proxyID (POD.NAMESPACE)"}, status_code=400)
        conns = s.connections_for(proxy_id) if s else []
        if not conns:
            return JSONResponse(
                {"error": f"proxy {proxy_id!r} is not connected to this Pilot instance"}, status_code=404
            )
        return _json(config_dump(s, conns[-1]))  # type: ignore[arg-type]

    async def configz(_: Request) -> Response:
        return _json(
            [
                {
                    "kind": c.kind,
                    "group": c.group,
                    "version": c.version,
                    "namespace": c.namespace,
                    "name": c.name,
                    "resourceVersion": c.resource_version,
                    "spec": c.spec_json(),
                }
                for c in sorted(state.configs.values(), key=lambda c: (c.kind, c.namespace, c.name))
            ]
        )

    async def registryz(_: Request) -> Response:
        s = server()
        services = s.ctx.services if s else list(state.services.values())
        return _json([dataclasses.asdict(svc) for svc in services])

    async def push_status(_: Request) -> Response:
        s = server()
        if s is None:
            return _json({})
        return _json(
            {
                **s.last_push,
                "pushes": s.push_count,
                "queued": s.queue.pending(),
                "cache_hits": s.cache.hits,
                "cache_misses": s.cache.misses,
            }
        )

    routes = [
        *health_routes(metrics.registry, not_ready),
        Route("/debug/syncz", sync_status),
        Route("/debug/config_dump", dump),
        Route("/debug/configz", configz),
        Route("/debug/registryz", registryz),
        Route("/debug/push_status", push_status),
    ]
    return Starlette(routes=routes)


def _json(value: Any) -> Response:
    """JSON as FastAPI wrote it: sets and tuples as lists, anything else by its string form."""
    text = json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False)
    return Response(text, media_type="application/json")


def _plain(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
