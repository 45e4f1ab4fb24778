"""One reconcile of an in-cluster install resource: render, apply, prune, report status.

The install resource is an ``IstioOperator`` object (``install.istio.io/v1alpha1``) in the
operator's namespace. Its spec is merged over its profile exactly as ``meshctl install`` merges a
file, so the two give the same objects. A reconcile applies every object server-side (the same
field manager as ``meshctl install``, forcing conflicts: a hand edit of a field the install sets
is undone), prunes what the install no longer renders, and writes the outcome to the object's
``status``: Istio's operator fields (``status``: HEALTHY, RECONCILING or ERROR, ``message``,
``componentStatus``) and two conditions, ``Reconciled`` and ``Ready``, with ``observedGeneration``.
It never waits: readiness is what the workloads report now, and the next reconcile updates it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshplane.ctl.install import cluster as ops
from meshplane.ctl.install import secrets
from meshplane.ctl.install.load import resolve
from meshplane.ctl.install.render import LABEL_OWNER, LABEL_REV, installable_kinds, render
from meshplane.ctl.install.spec import InstallError

GROUP, VERSION, PLURAL = "install.istio.io", "v1alpha1", "istiooperators"


@dataclass
class Outcome:
    status: str  # HEALTHY, RECONCILING or ERROR
    message: str
    components: dict[str, str]
    pruned: int = 0


def reconcile(cluster: ops.Cluster, manifests: Path, resource: dict[str, Any]) -> Outcome:
    """Bring the cluster to what ``resource`` asks for; report, never raise for bad input."""
    meta = resource["metadata"]
    where = f"IstioOperator {meta.get('namespace')}/{meta['name']}"
    try:
        op = resolve(
            manifests,
            resource.get("spec") or {},
            {"name": meta["name"], "namespace": meta.get("namespace")},
            where,
        )
        rendered = render(manifests, op)
    except InstallError as exc:
        return Outcome("ERROR", str(exc), {})
    objects = rendered.objects
    labels: dict[str, str] = next((o["metadata"]["labels"] for o in objects if o["kind"] != "Namespace"), {})
    secrets.prepare(cluster, objects)
    for _, members in ops.by_component(objects):  # namespaces and CRDs first, gateways last
        for obj in members:
            cluster.apply(obj)
    pruned = ops.prune(
        cluster,
        objects,
        installable_kinds(manifests),
        labels.get(LABEL_OWNER, ""),
        labels.get(LABEL_REV, "default"),
    )
    components: dict[str, str] = {}
    for component, members in ops.by_component(objects):
        workloads = [ops.key(o) for o in members if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
        components[component] = "HEALTHY" if all(cluster.is_ready(k) for k in workloads) else "RECONCILING"
    waiting = sorted(c for c, s in components.items() if s != "HEALTHY")
    message = f"waiting for {', '.join(waiting)}" if waiting else ""
    if rendered.warnings:
        message = "; ".join([*([message] if message else []), *rendered.warnings])
    return Outcome("RECONCILING" if waiting else "HEALTHY", message, components, len(pruned))


def status_body(outcome: Outcome, generation: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The object's new ``status``; a condition keeps its transition time while it holds."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {c["type"]: c for c in (previous or {}).get("conditions", [])}

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        status = "True" if ok else "False"
        since = old[kind]["lastTransitionTime"] if kind in old and old[kind].get("status") == status else now
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": since, "observedGeneration": generation}  # fmt: skip

    applied = outcome.status != "ERROR"
    return {
        "status": outcome.status,
        "message": outcome.message,
        "observedGeneration": generation,
        "componentStatus": {name: {"status": s} for name, s in sorted(outcome.components.items())},
        "conditions": [
            condition(
                "Reconciled",
                applied,
                "Applied" if applied else "InvalidSpec",
                "" if applied else outcome.message,
            ),
            condition("Ready", outcome.status == "HEALTHY", outcome.status.capitalize(), outcome.message),
        ],
    }
