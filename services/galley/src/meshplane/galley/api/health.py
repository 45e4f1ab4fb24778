"""``/healthz`` (alive); ``/readyz`` and ``/ready`` (initial load published, critical tasks up) and
``/metrics`` are the shared health routes (:mod:`meshplane.shared.health`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.routing import Route

from meshplane.galley.api.state import GalleyState
from meshplane.galley.metrics import REGISTRY
from meshplane.shared.health import health_routes

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response("ok\n", media_type="text/plain")


def ready_and_metrics(state: GalleyState) -> list[Route]:
    """``/readyz``, ``/ready`` and ``/metrics`` for an app serving ``state``."""

    def not_ready() -> str | None:
        return None if state.ready and state.tasks_running() else ""

    return health_routes(REGISTRY, not_ready, ready_paths=("/readyz", "/ready"))
