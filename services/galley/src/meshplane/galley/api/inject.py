"""``POST /inject``: Istio's sidecar-injector webhook (AdmissionReview v1 and v1beta1) on the
webhook port, from the same implementation as ``meshctl kube-inject`` (``meshplane.shared.inject``).

A pod that is not selected is allowed unchanged; an injected one is allowed with a JSON Patch. A
pod that cannot be injected (a bad annotation value, an unknown template, a spec Galley cannot
parse) is refused, ``allowed: false`` with the reason, as Istio refuses it: ``failurePolicy``
only matters when the webhook cannot be reached.

``POST /inject/rev/<revision>`` injects for that control-plane revision (its
MutatingWebhookConfiguration, or a tag's, calls that path): the proxy gets Pilot
``pilot-<revision>`` and records the revision (annotation ``istio.io/rev``, the status annotation,
node metadata ``ISTIO_REVISION``). One Galley injects for every revision. A revision that is not a
DNS label, or that Galley knows is not installed, is refused with the reason.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re

from fastapi import APIRouter, Request, Response

from meshplane.galley import metrics
from meshplane.galley.admission.review import AdmissionReview, build_response
from meshplane.galley.api.admission import json_response, read_review
from meshplane.shared.inject import InjectError, InjectorConfig, inject_pod, injection_required, json_patch
from meshplane.shared.inject.patch import workload_name
from meshplane.shared.inject.proxyconfig import warnings as proxy_config_warnings

log = logging.getLogger("meshplane.galley.inject")

router = APIRouter()


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@router.post("/inject/rev/{revision}")
async def inject_revision(request: Request, revision: str) -> Response:
    review = await read_review(request)
    if isinstance(review, Response):
        return review
    galley = request.app.state.galley
    if not _DNS_LABEL.match(revision):
        problem = f"revision {revision!r} in the path is not a DNS label"
    elif not await galley.revision_installed(revision):
        problem = f"revision {revision!r} is not installed (no sidecar injector configuration for it)"
    else:
        return await _inject(request, review, galley.injector.for_revision(revision))
    metrics.INJECTION_REQUESTS.inc()
    metrics.INJECTION_FAILURE.inc()
    log.info("refused to inject for %s: %s", request.url.path, problem)
    return json_response(build_response(review, allowed=False, message=f"injection failed: {problem}"))


@router.post("/inject")
@router.post("/inject/")
async def inject(request: Request) -> Response:
    review = await read_review(request)
    if isinstance(review, Response):
        return review
    return await _inject(request, review, request.app.state.galley.injector)


async def _inject(request: Request, review: AdmissionReview, injector: InjectorConfig) -> Response:
    metrics.INJECTION_REQUESTS.inc()
    req = review.request
    original = req.object
    pod = copy.deepcopy(original)
    try:
        if req.kind.kind not in ("", "Pod") or not isinstance(pod, dict):
            raise InjectError(f"request.object: expected a Pod, got {req.kind.kind or 'nothing'}")
        meta = pod.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise InjectError("metadata: expected an object")
        meta.pop("managedFields", None)
        namespace = str(meta.get("namespace") or req.namespace)
        if not injection_required(pod, namespace, injector):
            metrics.INJECTION_SKIP.inc()
            return json_response(build_response(review, allowed=True))
        before = copy.deepcopy(pod)
        galley = request.app.state.galley
        inject_pod(pod, workload_name(pod), injector, galley.proxy_configs, namespace)
    except InjectError as exc:
        metrics.INJECTION_FAILURE.inc()
        log.info("refused to inject %s/%s: %s", req.namespace, req.name or "(generated name)", exc)
        return json_response(build_response(review, allowed=False, message=f"injection failed: {exc}"))
    except Exception:  # a bug must not turn a strange pod into a webhook 5xx
        metrics.INJECTION_FAILURE.inc()
        log.exception("injecting %s/%s failed unexpectedly", req.namespace, req.name or "(generated name)")
        message = "injection failed: the pod could not be injected (internal error, logged by galley)"
        return json_response(build_response(review, allowed=False, message=message))
    metrics.INJECTION_SUCCESS.inc()
    notes = proxy_config_warnings(before["metadata"].get("annotations") or {})
    answer = build_response(review, allowed=True, warnings=notes)
    patch = json.dumps(json_patch(before, pod), separators=(",", ":")).encode()
    answer["response"].update(patchType="JSONPatch", patch=base64.b64encode(patch).decode())
    return json_response(answer)
