"""Debug views on the monitoring port: ``/debug/sources`` and ``/debug/analyze``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from meshplane.galley.api.state import GalleyState

router = APIRouter(prefix="/debug")


@router.get("/sources")
async def sources(request: Request) -> dict[str, Any]:
    state: GalleyState = request.app.state.galley
    return state.sources()


@router.get("/analyze")
async def analyze(request: Request) -> dict[str, Any]:
    state: GalleyState = request.app.state.galley
    return state.analysis()
