"""Run the analyzers over a set of objects, the way ``istioctl analyze`` does.

Files-only analysis gets istioctl's synthetic default ingress gateway (a Pod and a Service in
the Istio namespace) unless MeshConfig turns ``ingressControllerMode`` OFF, so Gateways that
select ``istio: ingressgateway`` are not reported as selecting nothing. Messages are deduplicated,
then dropped when suppressed (the ``galley.istio.io/analyze-suppress`` annotation, or a
``--suppress CODE=Kind ns/name`` rule with ``*`` globs) or about a resource outside the namespace
under analysis.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshplane.shared.analysis import registry
from meshplane.shared.analysis.context import Context, Resource
from meshplane.shared.analysis.messages import LEVEL_RANK, Message
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"
SYNTHETIC_ORIGIN = "internal-ingress"


@dataclass(frozen=True, slots=True)
class Suppression:
    """``CODE=Kind ns/name``; ``*`` in the code or the resource part is a glob."""

    code: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        if not sep or not code.strip() or not resource.strip():
            raise ValueError(
                f"--suppress {text!r}: expected CODE=Kind ns/name (for example IST0102=Namespace frod)"
            )
        return cls(code.strip(), resource.strip())

    def hides(self, msg: Message) -> bool:
        return fnmatch.fnmatchcase(msg.code, self.code) and fnmatch.fnmatchcase(msg.resource, self.resource)


@dataclass(frozen=True, slots=True)
class Options:
    mesh_config: Mapping[str, Any] | None = None
    mesh_networks: Mapping[str, Any] | None = None
    #: Namespace under analysis (messages about other namespaced resources are dropped); None = all.
    namespace: str | None = None
    #: Namespace given to objects that have none.
    default_namespace: str = "default"
    suppress: tuple[Suppression, ...] = ()
    #: Add istioctl's synthetic ingress gateway (files-only analysis).
    add_defaults: bool = True
    analyzers: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Analysis:
    messages: list[Message]

    def has_at_least(self, level: str) -> bool:
        return any(LEVEL_RANK[msg.level] >= LEVEL_RANK[level] for msg in self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [msg.to_dict() for msg in self.messages]}


def _resource(obj: Mapping[str, Any], origin: str, default_namespace: str) -> Resource | None:
    api_version, kind, md = obj.get("apiVersion"), obj.get("kind"), obj.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(md, Mapping):
        return None
    name = md.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = md.get("namespace")
    if kind in registry.CLUSTER_SCOPED:
        namespace = ""
    else:
        namespace = ns if isinstance(ns, str) and ns else default_namespace
    return Resource(api_version.rpartition("/")[0], kind, namespace, name, obj, origin)


def _synthetic(istio_namespace: str, service: str) -> list[Resource]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{service}-dummypod",
            "namespace": istio_namespace,
            "labels": {"istio": "ingressgateway"},
        },
        "spec": {"containers": [{"name": "istio-proxy"}]},
    }
    ports = [("http2", 80), ("https", 443), ("tcp", 31400), ("tls", 15443)]
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "namespace": istio_namespace},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p} for n, p in ports],
        },
    }
    return [
        Resource("", "Pod", istio_namespace, pod["metadata"]["name"], pod, SYNTHETIC_ORIGIN),  # type: ignore[index]
        Resource("", "Service", istio_namespace, service, svc, SYNTHETIC_ORIGIN),
    ]


def _annotation_codes(value: str) -> set[str]:
    return {c.strip() for c in value.split(",") if c.strip()}


def _visible(msg: Message, by_name: Mapping[str, Resource], options: Options) -> bool:
    r = by_name.get(msg.resource)
    if r is None:
        return True
    if r.origin == SYNTHETIC_ORIGIN:
        return False
    codes = _annotation_codes(r.str_map("annotations").get(SUPPRESS_ANNOTATION, ""))
    if msg.code in codes or "*" in codes:
        return False
    if any(s.hides(msg) for s in options.suppress):
        return False
    return options.namespace is None or not r.namespace or r.namespace == options.namespace


def analyze(items: Iterable[tuple[Mapping[str, Any], str]], options: Options | None = None) -> Analysis:
    """Analyze ``(object, origin)`` pairs; messages come sorted by level, resource, then code."""
    opts = options or Options()
    resources = [
        r for r in (_resource(obj, origin, opts.default_namespace) for obj, origin in items) if r is not None
    ]
    mesh = opts.mesh_config or {}
    if opts.add_defaults and str(mesh.get("ingressControllerMode", "")).upper() != "OFF":
        istio_ns = str(mesh.get("rootNamespace") or DEFAULT_ROOT_NAMESPACE)
        present = {(r.kind, r.namespace, r.name) for r in resources}
        synthetic = _synthetic(istio_ns, str(mesh.get("ingressService") or "istio-ingressgateway"))
        resources += [r for r in synthetic if (r.kind, r.namespace, r.name) not in present]
    ctx = Context(resources, opts.mesh_config, opts.mesh_networks)
    for analyzer in registry.selected(opts.analyzers):
        analyzer.run(ctx)
    by_name = {r.describe(): r for r in resources}
    seen: set[tuple[str, str, str]] = set()
    kept: list[Message] = []
    for msg in ctx.messages:
        key = (msg.code, msg.resource, msg.text)
        if key in seen or not _visible(msg, by_name, opts):
            continue
        seen.add(key)
        kept.append(msg)
    kept.sort(key=lambda msg: (-LEVEL_RANK[msg.level], msg.resource, msg.code, msg.text))
    return Analysis(kept)
