"""``/healthz`` (alive), ``/readyz`` (initial load published, critical tasks up), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meshplane.galley.api.state import GalleyState
from meshplane.galley.metrics import REGISTRY

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response("ok\n", media_type="text/plain")


@router.get("/readyz")
@router.get("/ready")
async def readyz(request: Request) -> Response:
    state: GalleyState = request.app.state.galley
    if state.ready and state.tasks_running():
        return Response("ready\n", media_type="text/plain")
    return Response("not ready\n", status_code=503, media_type="text/plain")


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
