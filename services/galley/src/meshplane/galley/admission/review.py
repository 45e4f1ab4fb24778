"""The AdmissionReview wire format (``admission.k8s.io/v1`` and ``v1beta1``): parse and answer.

Parsing never raises anything but :class:`ReviewError`, whose message names what is wrong, so
the HTTP layer can always answer 400 with it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class ReviewError(ValueError):
    """The body is not an AdmissionReview galley can answer."""


class GroupVersionKind(BaseModel):
    model_config = ConfigDict(extra="allow")

    group: str = ""
    version: str = ""
    kind: str = ""


class AdmissionRequest(BaseModel):
    """The fields of ``request`` galley uses; everything else is kept but ignored."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    uid: str
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    namespace: str = ""
    name: str = ""
    operation: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool | None = Field(default=None, alias="dryRun")


class AdmissionReview(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    request: AdmissionRequest


def parse_review(body: bytes) -> AdmissionReview:
    """Decode a request body; raise :class:`ReviewError` naming the problem."""
    if not body.strip():
        raise ReviewError("request body is empty")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReviewError(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise ReviewError("malformed JSON: nested too deeply") from exc
    if not isinstance(data, dict):
        raise ReviewError(f"expected an AdmissionReview object, got JSON {type(data).__name__}")
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if kind != "AdmissionReview":
        raise ReviewError(f"kind: expected AdmissionReview, got {kind!r}")
    if api_version not in ADMISSION_VERSIONS:
        raise ReviewError(f"apiVersion: expected one of {', '.join(ADMISSION_VERSIONS)}, got {api_version!r}")
    if not isinstance(data.get("request"), dict):
        raise ReviewError("request: missing (an AdmissionReview to answer must carry a request)")
    try:
        return AdmissionReview.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReviewError(f"{where}: {first['msg']}") from exc


def build_response(
    review: AdmissionReview, *, allowed: bool, message: str = "", warnings: list[str] | None = None
) -> dict[str, Any]:
    """The AdmissionReview answer, in the version the request used, with its ``uid`` echoed."""
    response: dict[str, Any] = {"uid": review.request.uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"status": "Failure", "code": 400, "reason": "BadRequest", "message": message}
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": review.api_version, "kind": "AdmissionReview", "response": response}
