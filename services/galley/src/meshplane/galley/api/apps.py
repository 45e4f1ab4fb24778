"""The two ASGI apps: the webhook port (validate + health + metrics) and the monitoring port."""

from __future__ import annotations

from fastapi import FastAPI

from meshplane.galley.api import admission, debug, health
from meshplane.galley.api.state import GalleyState


def create_webhook_app(state: GalleyState) -> FastAPI:
    """The app on ``--webhook-addr``: ``POST /validate``, ``/healthz``, ``/readyz``, ``/metrics``."""
    app = FastAPI(title="meshplane-galley webhook", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.galley = state
    app.include_router(admission.router)
    app.include_router(health.router)
    return app


def create_monitoring_app(state: GalleyState) -> FastAPI:
    """The app on ``--monitoring-addr``: health, ``/metrics`` and ``/debug/*``."""
    app = FastAPI(title="meshplane-galley monitoring", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.galley = state
    app.include_router(health.router)
    app.include_router(debug.router)
    return app
