"""``POST /validate``: the validating admission webhook (AdmissionReview v1 and v1beta1).

Bad input is answered 4xx with a message (415 wrong Content-Type, 400 empty / malformed /
not an AdmissionReview); a 5xx would mean galley itself failed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from meshplane.galley import metrics
from meshplane.galley.admission.review import AdmissionReview, ReviewError, build_response, parse_review
from meshplane.galley.admission.validate import Verdict, review_object

log = logging.getLogger("meshplane.galley.webhook")

router = APIRouter()


def _error(status: int, message: str) -> Response:
    metrics.VALIDATION_HTTP_ERROR.labels(str(status)).inc()
    return Response(message + "\n", status_code=status, media_type="text/plain")


def _decide(operation: str, obj: object) -> Verdict:
    if obj is not None and not isinstance(obj, dict):
        return Verdict(False, "request.object: expected a JSON object", metrics.REASON_DECODE_ERROR)
    try:
        return review_object(operation, obj)
    except Exception:  # a rule that crashes must not turn bad input into a 5xx
        log.exception("validation failed unexpectedly")
        return Verdict(False, "configuration is invalid: the object could not be validated", "internal")


async def read_review(request: Request) -> AdmissionReview | Response:
    """The request's AdmissionReview, or the 4xx answer naming what is wrong with it."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return _error(415, f"expected Content-Type application/json, got {content_type or 'none'!r}")
    body = await request.body()
    try:
        return parse_review(body)
    except ReviewError as exc:
        return _error(400, f"invalid AdmissionReview: {exc}")


def json_response(answer: dict[str, Any]) -> Response:
    return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")


@router.post("/validate")
@router.post("/validate/")
async def validate(request: Request) -> Response:
    review = await read_review(request)
    if isinstance(review, Response):
        return review
    req = review.request
    verdict = _decide(req.operation, req.object)
    if verdict.allowed:
        metrics.VALIDATION_PASSED.inc()
    else:
        metrics.VALIDATION_FAILED.labels(verdict.reason).inc()
        log.info("denied %s %s/%s: %s", req.kind.kind or "object", req.namespace, req.name, verdict.message)
    answer = build_response(
        review, allowed=verdict.allowed, message=verdict.message, warnings=verdict.warnings
    )
    return json_response(answer)
