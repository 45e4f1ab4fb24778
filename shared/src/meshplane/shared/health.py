"""The ``/ready`` + ``/metrics`` HTTP surface every service serves: one implementation.

``/ready`` answers 200 ``ready`` once the service is serving, else 503 ``not ready`` with the reason
when it has one; ``/metrics`` is the Prometheus text of the service's registry. The Starlette routes
from :func:`health_routes` are mounted by the services on Starlette or FastAPI, next to their own
routes; a service with a plain asyncio responder (Citadel's monitoring port) answers with
:func:`ready_response` and :func:`metrics_response`, so the bodies and status codes are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

#: Why the service is not ready (``""`` when it has no reason to give), or None when it is ready.
NotReady = Callable[[], str | None]


def ready_response(not_ready: NotReady) -> tuple[int, str]:
    """The status code and text body of ``/ready``."""
    reason = not_ready()
    if reason is None:
        return 200, "ready\n"
    return 503, f"not ready: {reason}\n" if reason else "not ready\n"


def metrics_response(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of ``/metrics``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def health_routes(
    registry: CollectorRegistry, not_ready: NotReady, *, ready_paths: Sequence[str] = ("/ready",)
) -> list[Route]:
    """Starlette routes for ``/ready`` (at each of ``ready_paths``) and ``/metrics``.

    The handlers are ``async def``: they run on the event loop, where the service's state lives.
    """

    async def ready(_: Request) -> Response:
        status, body = ready_response(not_ready)
        return PlainTextResponse(body, status_code=status)

    async def metrics(_: Request) -> Response:
        body, content_type = metrics_response(registry)
        return Response(body, media_type=content_type)

    return [
        *(Route(path, ready, methods=["GET"]) for path in ready_paths),
        Route("/metrics", metrics, methods=["GET"]),
    ]
