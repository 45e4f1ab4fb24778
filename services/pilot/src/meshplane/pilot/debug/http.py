"""Starlette app: /ready, /metrics, /debug/{syncz,config_dump,configz,registryz,push_status} and
Istio's /debug/{adsz,edsz,instancesz,authorizationz,mesh} (:mod:`.istioz`), /debug/endpointShardz, and
/debug/clusterz (the remote clusters of a multi-cluster Pilot).

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
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from meshplane.pilot.debug import istioz
from meshplane.pilot.debug.syncz import config_dump, syncz
from meshplane.pilot.ingest.watcher import State
from meshplane.pilot.metrics import Metrics
from meshplane.pilot.xds.connection import Connection
from meshplane.pilot.xds.discovery import DiscoveryServer
from meshplane.shared.health import health_routes

ServerFn = Callable[[], DiscoveryServer | None]


def build_app(
    metrics: Metrics,
    state: State,
    server: ServerFn,
    not_ready: Callable[[], str | None],
    push_all: Callable[[], bool] | None = None,
    cluster_id: str = "Kubernetes",
) -> Starlette:
    """``not_ready`` returns why Pilot is not ready (the 503 body), or None when it is;
    ``push_all`` queues a full push to every proxy (``/debug/adsz?push=true``), False when it cannot."""

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
        return _json(istioz.configz(state.configs.values()))

    def connection(request: Request) -> Connection | Response:
        """The connection ``?proxyID=`` names, or Istio's 400/404 answer."""
        proxy_id = request.query_params.get("proxyID", "")
        if not proxy_id:
            return PlainTextResponse(istioz.NO_PROXY_ID, status_code=400)
        s = server()
        conns = s.connections_for(proxy_id) if s else []
        if not conns:
            return PlainTextResponse(istioz.NOT_CONNECTED, status_code=404)
        return conns[-1]

    async def adsz(request: Request) -> Response:
        s = server()
        if request.query_params.get("push"):
            if push_all is None or s is None or not push_all():
                return PlainTextResponse("Pilot is not serving yet; nothing pushed\n", status_code=503)
            return PlainTextResponse(f"Pushed to {len(s.connections)} servers\n")
        if "proxyID" in request.query_params:
            found = connection(request)
            return found if isinstance(found, Response) else _json(istioz.adsz([found]))
        return _json(istioz.adsz(list(s.connections.values()) if s else []))

    async def edsz(request: Request) -> Response:
        found, s = connection(request), server()
        if isinstance(found, Response):
            return found
        return _json(istioz.edsz(s, found) if s else [])

    async def instancesz(_: Request) -> Response:
        s = server()
        return _json(istioz.instancesz(s) if s else {})

    async def authorizationz(_: Request) -> Response:
        return _json(istioz.authorizationz(state.configs.values(), state.root_namespace))

    async def mesh(_: Request) -> Response:
        return _json(istioz.mesh_json(state.mesh))

    async def registryz(_: Request) -> Response:
        s = server()
        services = s.ctx.services if s else list(state.services.values())
        return _json([dataclasses.asdict(svc) for svc in services])

    async def clusterz(_: Request) -> Response:
        """The remote clusters whose registries are merged (multi-cluster), and how fresh each is."""
        now = time.time()
        return _json([remote.describe(now) for _, remote in sorted(state.remotes.items())])

    async def endpoint_shardz(_: Request) -> Response:
        """Istio's /debug/endpointShardz: each service's endpoints by the cluster they come from
        (this Pilot's own under its ``--cluster-id``), with address, port, network and locality."""
        s = server()
        out: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
        for svc in s.ctx.services if s else []:
            shards = out.setdefault(svc.hostname, {}).setdefault(svc.namespace, {})
            for port in svc.ports:
                for ep in s.ctx.endpoints(svc.hostname, svc.namespace, port.number) if s else []:
                    shards.setdefault(ep.cluster_id or cluster_id, []).append(
                        {
                            "address": ep.address,
                            "port": ep.port,
                            "servicePort": port.number,
                            "network": ep.network,
                            "locality": ep.locality,
                            "healthy": ep.healthy,
                        }
                    )
        return _json(out)

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
        Route("/debug/adsz", adsz),
        Route("/debug/edsz", edsz),
        Route("/debug/instancesz", instancesz),
        Route("/debug/authorizationz", authorizationz),
        Route("/debug/mesh", mesh),
        Route("/debug/clusterz", clusterz),
        Route("/debug/endpointShardz", endpoint_shardz),
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
