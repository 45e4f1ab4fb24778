"""The input of one analysis: resources indexed by kind, with host and selector helpers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshplane.shared.analysis.messages import Message, MessageType
from meshplane.shared.meshconfig import DEFAULT_ROOT_NAMESPACE

DOMAIN_SUFFIX = "svc.cluster.local"


@dataclass(frozen=True, slots=True)
class Resource:
    """One object under analysis."""

    group: str
    kind: str
    namespace: str
    name: str
    obj: Mapping[str, Any]
    origin: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def metadata(self) -> Mapping[str, Any]:
        md = self.obj.get("metadata")
        return md if isinstance(md, Mapping) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    def str_map(self, field: str) -> dict[str, str]:
        value = self.metadata.get(field)
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name resolution: ``reviews`` in ``default`` → ``reviews.default.svc.cluster.local``."""
    if "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.{DOMAIN_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` is covered by ``pattern`` (``*.example.com`` covers ``a.example.com``)."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return False


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def str_dict(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def selector_text(selector: Mapping[str, str]) -> str:
    """A label selector as Kubernetes prints it: ``app=a,version=v1`` (keys sorted)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def go_list(items: Iterable[object]) -> str:
    """A list as Go's ``%v`` prints it: ``[a b]``."""
    return "[" + " ".join(str(i) for i in items) + "]"


def strs(value: object) -> list[str]:
    """The scalar items of a YAML list, as strings (anything else is skipped; schema checks report it)."""
    return [str(v) for v in value if isinstance(v, (str, int))] if isinstance(value, list) else []


def mappings(value: object) -> list[Mapping[str, Any]]:
    """The mapping items of a YAML list (anything else is skipped; schema checks report it)."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


class Context:
    """Resources by kind, plus the service hosts they define; collects messages."""

    def __init__(
        self,
        resources: list[Resource],
        mesh_config: Mapping[str, Any] | None = None,
        mesh_networks: Mapping[str, Any] | None = None,
    ) -> None:
        self.resources = resources
        self.mesh_config: Mapping[str, Any] = mesh_config or {}
        self.mesh_networks: Mapping[str, Any] = mesh_networks or {}
        self.root_namespace = str(self.mesh_config.get("rootNamespace") or DEFAULT_ROOT_NAMESPACE)
        self._by_kind: dict[str, list[Resource]] = {}
        for r in resources:
            self._by_kind.setdefault(r.kind, []).append(r)
        self.messages: list[Message] = []
        self.service_hosts: set[str] = set()
        for svc in self.kind("Service"):
            if not svc.group:
                self.service_hosts.add(f"{svc.name}.{svc.namespace}.{DOMAIN_SUFFIX}")
        for se in self.kind("ServiceEntry"):
            self.service_hosts.update(strs(se.spec.get("hosts")))

    def kind(self, kind: str) -> list[Resource]:
        return self._by_kind.get(kind, [])

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def find(self, kind: str, namespace: str, name: str) -> Resource | None:
        for r in self.kind(kind):
            if r.namespace == namespace and r.name == name:
                return r
        return None

    def pods(self, selector: Mapping[str, str], namespace: str | None = None) -> list[Resource]:
        """Pods the selector matches (in ``namespace`` when given); an empty selector matches all."""
        return [
            p
            for p in self.kind("Pod")
            if (namespace is None or p.namespace == namespace) and selects(selector, p.str_map("labels"))
        ]

    def workloads(self, selector: Mapping[str, str], namespace: str | None = None) -> list[Resource]:
        """Pods and WorkloadEntries (meshplane's usual workloads; Istio's analyzers see only Pods)
        that the selector matches."""
        entries = [
            w
            for w in self.kind("WorkloadEntry")
            if (namespace is None or w.namespace == namespace)
            and selects(selector, str_dict(w.spec.get("labels")))
        ]
        return self.pods(selector, namespace) + entries

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.find("Namespace", "", namespace)
        return ns.str_map("labels") if ns else {}

    def host_known(self, host: str) -> bool:
        return any(host_matches(known, host) or host_matches(host, known) for known in self.service_hosts)

    def report(self, mtype: MessageType, resource: Resource, text: str) -> None:
        self.messages.append(Message(mtype, resource.describe(), text, resource.origin))
