"""Run every analyzer over a set of objects; honour ``galley.istio.io/analyze-suppress``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshplane.shared.analysis import annotation, destinationrule, gateway, resources, virtualservice
from meshplane.shared.analysis.context import Context, Resource
from meshplane.shared.analysis.messages import LEVEL_RANK, Message

ANALYZERS: tuple[Callable[[Context], None], ...] = (
    resources.check_schema,
    resources.check_injection,
    resources.check_port_names,
    annotation.check,
    virtualservice.check_references,
    virtualservice.check_mesh_host_conflicts,
    virtualservice.check_rules,
    gateway.check_ports,
    gateway.check_conflicts,
    destinationrule.check_server_verification,
    destinationrule.check_mtls_conflicts,
)

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


@dataclass(frozen=True, slots=True)
class Analysis:
    messages: list[Message]

    def has_at_least(self, level: str) -> bool:
        return any(LEVEL_RANK[msg.level] >= LEVEL_RANK[level] for msg in self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [msg.to_dict() for msg in self.messages]}


def _resource(obj: Mapping[str, Any], origin: str) -> Resource | None:
    api_version, kind, md = obj.get("apiVersion"), obj.get("kind"), obj.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(md, Mapping):
        return None
    name = md.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = md.get("namespace")
    namespace = "" if kind == "Namespace" else (ns if isinstance(ns, str) and ns else "default")
    return Resource(api_version.rpartition("/")[0], kind, namespace, name, obj, origin)


def _codes(annotation_value: str) -> set[str]:
    return {c.strip() for c in annotation_value.split(",") if c.strip()}


def analyze(items: Iterable[tuple[Mapping[str, Any], str]]) -> Analysis:
    """Analyze ``(object, origin)`` pairs; messages come sorted by resource, then code."""
    resources_ = [r for r in (_resource(obj, origin) for obj, origin in items) if r is not None]
    ctx = Context(resources_)
    for analyzer in ANALYZERS:
        analyzer(ctx)
    suppressed = {r.describe(): r.str_map("annotations").get(SUPPRESS_ANNOTATION, "") for r in resources_}
    kept = [
        msg
        for msg in ctx.messages
        if msg.code not in suppressed.get(msg.resource, "").replace(" ", "").split(",")
    ]
    kept.sort(key=lambda msg: (-LEVEL_RANK[msg.level], msg.resource, msg.code, msg.text))
    return Analysis(kept)
