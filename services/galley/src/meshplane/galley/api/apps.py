"""The two ASGI apps: the webhook port (validate + health + metrics) and the monitoring port."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from meshplane.galley.api import admission, debug, health, inject
from meshplane.galley.api.limits import BodyLimits, Limits
from meshplane.galley.api.state import GalleyState


def _app(title: str, state: GalleyState, *routers: APIRouter) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.galley = state
    for router in routers:
        app.include_router(router)
    app.router.routes.extend(health.ready_and_metrics(state))
    return app


def create_webhook_app(state: GalleyState, limits: Limits | None = None) -> FastAPI:
    """The app on ``--webhook-addr``: ``POST /validate``, ``POST /inject``, ``/healthz``, ``/readyz``,
    ``/metrics``; request bodies are bounded by ``limits`` (:mod:`.limits`)."""
    app = _app("meshplane-galley webhook", state, admission.router, inject.router, health.router)
    app.add_middleware(BodyLimits, limits=limits or Limits())
    return app


def create_monitoring_app(state: GalleyState) -> FastAPI:
    """The app on ``--monitoring-addr``: health, ``/metrics`` and ``/debug/*``."""
    return _app("meshplane-galley monitoring", state, health.router, debug.router)
