"""The ASGI apps: the webhook port (validate + health + metrics), the monitoring port (health +
metrics, for probes and scrapers) and the local-only debug port (``/debug/*``, which shows every
config file's content errors and the analyzers' findings)."""

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


def create_monitoring_app(state: GalleyState, with_debug: bool = False) -> FastAPI:
    """The app on ``--monitoring-addr``: health and ``/metrics``; with ``with_debug`` (when
    ``--debug-addr`` is the same address) also ``/debug/*``."""
    routers = (health.router, debug.router) if with_debug else (health.router,)
    return _app("meshplane-galley monitoring", state, *routers)


def create_debug_app(state: GalleyState) -> FastAPI:
    """The app on ``--debug-addr`` (local-only by default): ``/debug/*``, health and ``/metrics``."""
    return _app("meshplane-galley debug", state, health.router, debug.router)
